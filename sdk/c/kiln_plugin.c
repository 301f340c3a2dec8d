/* kiln_plugin.c: the C SDK's implementation (see kiln_plugin.h). */
#include "kiln_plugin.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocation failure cannot be handled inside a capped instance (growing
 * past kiln's memory cap traps anyway): trap, kiln replaces the instance. */
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

/* Heap copy of s[0..len), as the bindings free it: nothing for len 0. */
static plugin_string_t dup_n(const char *s, size_t len) {
    plugin_string_t out = {NULL, 0};
    if (len) {
        out.ptr = xmalloc(len);
        memcpy(out.ptr, s, len);
        out.len = len;
    }
    return out;
}

static plugin_string_t dup_str(const char *s) { return dup_n(s, strlen(s)); }

/* ---- the component's exports ------------------------------------------- */

void exports_kiln_plugin_processor_metadata(exports_kiln_plugin_processor_plugin_metadata_t *ret) {
    memset(ret, 0, sizeof *ret);
    kiln_plugin_metadata(ret);
}

bool exports_kiln_plugin_processor_process(exports_kiln_plugin_processor_list_tensor_t *inputs,
                                           exports_kiln_plugin_processor_list_parameter_t *parameters,
                                           exports_kiln_plugin_processor_list_tensor_t *ret,
                                           exports_kiln_plugin_processor_error_t *err) {
    kiln_outputs_t outputs = {NULL, 0};
    memset(err, 0, sizeof *err);
    bool ok = kiln_plugin_process(inputs, parameters, &outputs, err);
    /* The arguments belong to the callee: free them now. */
    exports_kiln_plugin_processor_list_tensor_free(inputs);
    exports_kiln_plugin_processor_list_parameter_free(parameters);
    if (ok) {
        if (err->message.len) plugin_string_free(&err->message);
        *ret = outputs;
        return true;
    }
    exports_kiln_plugin_processor_list_tensor_free(&outputs);
    if (!err->message.len) {
        err->kind = KILN_INTERNAL;
        err->message = dup_str("plugin failed without an error message");
    }
    return false;
}

/* ---- metadata ------------------------------------------------------------ */

void kiln_metadata_init(kiln_metadata_t *meta, const char *name, const char *version) {
    plugin_string_free(&meta->name);
    plugin_string_free(&meta->version);
    meta->name = dup_str(name);
    meta->version = dup_str(version);
}

static void add_spec(kiln_plugin_types_list_tensor_spec_t *list, const char *name, kiln_datatype_t datatype,
                     const int64_t *dims, size_t ndims) {
    list->ptr = xrealloc(list->ptr, (list->len + 1) * sizeof *list->ptr);
    kiln_plugin_types_tensor_spec_t *s = &list->ptr[list->len++];
    s->name = dup_str(name);
    s->datatype = datatype;
    s->dims.ptr = NULL;
    s->dims.len = 0;
    if (ndims) {
        s->dims.ptr = xmalloc(ndims * sizeof(int64_t));
        memcpy(s->dims.ptr, dims, ndims * sizeof(int64_t));
        s->dims.len = ndims;
    }
}

void kiln_metadata_input(kiln_metadata_t *meta, const char *name, kiln_datatype_t datatype,
                         const int64_t *dims, size_t ndims) {
    add_spec(&meta->inputs, name, datatype, dims, ndims);
}

void kiln_metadata_output(kiln_metadata_t *meta, const char *name, kiln_datatype_t datatype,
                          const int64_t *dims, size_t ndims) {
    add_spec(&meta->outputs, name, datatype, dims, ndims);
}

/* ---- errors -------------------------------------------------------------- */

bool kiln_fail(kiln_error_t *err, kiln_error_kind_t kind, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    plugin_string_free(&err->message);
    err->kind = kind;
    if (n < 0) {
        err->message = dup_str("(unformattable error message)");
    } else if ((size_t)n < sizeof small) {
        err->message = dup_n(small, (size_t)n);
    } else {
        char *big = xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        err->message.ptr = (uint8_t *)big; /* malloc'd: the bindings free it */
        err->message.len = (size_t)n;
    }
    return false;
}

/* ---- names, datatypes, shapes --------------------------------------------- */

bool kiln_name_is(const plugin_string_t *name, const char *s) {
    size_t n = strlen(s);
    return name->len == n && (n == 0 || memcmp(name->ptr, s, n) == 0);
}

size_t kiln_datatype_size(kiln_datatype_t datatype) {
    switch (datatype) {
    case KILN_BOOL: case KILN_UINT8: case KILN_INT8: return 1;
    case KILN_UINT16: case KILN_INT16: case KILN_FP16: case KILN_BF16: return 2;
    case KILN_UINT32: case KILN_INT32: case KILN_FP32: return 4;
    case KILN_UINT64: case KILN_INT64: case KILN_FP64: return 8;
    default: return 0;
    }
}

const char *kiln_datatype_name(kiln_datatype_t datatype) {
    static const char *const names[] = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                        "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"};
    return datatype < sizeof names / sizeof names[0] ? names[datatype] : "?";
}

char *kiln_shape_str(const int64_t *shape, size_t ndims, char *buf, size_t size) {
    size_t at = 0;
    if (!size) return buf;
    buf[0] = 0;
#define PUT(...) do { int w_ = snprintf(buf + at, at < size ? size - at : 0, __VA_ARGS__); \
                      if (w_ > 0) at += (size_t)w_; } while (0)
    PUT("[");
    for (size_t i = 0; i < ndims; i++) PUT("%s%lld", i ? ", " : "", (long long)shape[i]);
    PUT("]");
#undef PUT
    buf[size - 1] = 0;
    return buf;
}

/* ---- inputs ---------------------------------------------------------------- */

const kiln_tensor_t *kiln_input_find(const kiln_inputs_t *inputs, const char *name) {
    for (size_t i = 0; i < inputs->len; i++)
        if (kiln_name_is(&inputs->ptr[i].name, name)) return &inputs->ptr[i];
    return NULL;
}

const kiln_tensor_t *kiln_input(const kiln_inputs_t *inputs, const char *name, kiln_error_t *err) {
    const kiln_tensor_t *t = kiln_input_find(inputs, name);
    if (t) return t;
    size_t need = 8;
    for (size_t i = 0; i < inputs->len; i++) need += inputs->ptr[i].name.len + 2;
    char *have = xmalloc(need);
    size_t at = 0;
    for (size_t i = 0; i < inputs->len; i++) {
        if (i) { memcpy(have + at, ", ", 2); at += 2; }
        memcpy(have + at, inputs->ptr[i].name.ptr, inputs->ptr[i].name.len);
        at += inputs->ptr[i].name.len;
    }
    have[at] = 0;
    kiln_invalid(err, "missing input tensor '%s' (the request has: %s)", name, inputs->len ? have : "none");
    free(have);
    return NULL;
}

bool kiln_tensor_count(const kiln_tensor_t *t, size_t *count, kiln_error_t *err) {
    size_t n = 1;
    char shape[160];
    for (size_t i = 0; i < t->shape.len; i++) {
        int64_t d = t->shape.ptr[i];
        if (d < 0)
            return kiln_invalid(err, "tensor '%.*s': negative dimension in shape %s", (int)t->name.len,
                                (const char *)t->name.ptr, kiln_shape_str(t->shape.ptr, t->shape.len, shape, sizeof shape));
        if (d != 0 && n > SIZE_MAX / (uint64_t)d)
            return kiln_invalid(err, "tensor '%.*s': shape %s is too large", (int)t->name.len,
                                (const char *)t->name.ptr, kiln_shape_str(t->shape.ptr, t->shape.len, shape, sizeof shape));
        n *= (size_t)d;
    }
    *count = n;
    return true;
}

bool kiln_tensor_expect(const kiln_tensor_t *t, kiln_datatype_t datatype, kiln_error_t *err) {
    const int nl = (int)t->name.len;
    const char *nm = (const char *)t->name.ptr;
    char shape[160];
    if (t->datatype != datatype)
        return kiln_invalid(err, "tensor '%.*s' is %s, expected %s", nl, nm, kiln_datatype_name(t->datatype),
                            kiln_datatype_name(datatype));
    size_t count;
    if (!kiln_tensor_count(t, &count, err)) return false;
    size_t size = kiln_datatype_size(datatype);
    if (size) {
        if (t->elements.len)
            return kiln_invalid(err, "tensor '%.*s' is %s but has BYTES elements", nl, nm, kiln_datatype_name(datatype));
        if (count > SIZE_MAX / size || t->data.len != count * size)
            return kiln_invalid(err, "tensor '%.*s': shape %s of %s needs %zu bytes, data has %zu", nl, nm,
                                kiln_shape_str(t->shape.ptr, t->shape.len, shape, sizeof shape),
                                kiln_datatype_name(datatype), count * size, t->data.len);
    } else {
        if (t->data.len)
            return kiln_invalid(err, "tensor '%.*s' is BYTES but has raw data (BYTES uses elements)", nl, nm);
        if (t->elements.len != count)
            return kiln_invalid(err, "tensor '%.*s': shape %s needs %zu BYTES elements, it has %zu", nl, nm,
                                kiln_shape_str(t->shape.ptr, t->shape.len, shape, sizeof shape), count,
                                t->elements.len);
    }
    return true;
}

static bool view(const kiln_tensor_t *t, kiln_datatype_t datatype, size_t align, const void **values,
                 size_t *count, kiln_error_t *err) {
    if (!kiln_tensor_expect(t, datatype, err)) return false;
    /* (an empty list may carry any pointer, e.g. the canonical ABI's 1) */
    if (t->data.len && (uintptr_t)t->data.ptr % align)
        return kiln_internal(err, "tensor '%.*s': data is not aligned for %s", (int)t->name.len,
                             (const char *)t->name.ptr, kiln_datatype_name(datatype));
    *values = t->data.ptr;
    *count = t->data.len / kiln_datatype_size(datatype);
    return true;
}

bool kiln_tensor_f32(const kiln_tensor_t *t, const float **v, size_t *n, kiln_error_t *err) {
    return view(t, KILN_FP32, _Alignof(float), (const void **)v, n, err);
}
bool kiln_tensor_f64(const kiln_tensor_t *t, const double **v, size_t *n, kiln_error_t *err) {
    return view(t, KILN_FP64, _Alignof(double), (const void **)v, n, err);
}
bool kiln_tensor_i32(const kiln_tensor_t *t, const int32_t **v, size_t *n, kiln_error_t *err) {
    return view(t, KILN_INT32, _Alignof(int32_t), (const void **)v, n, err);
}
bool kiln_tensor_i64(const kiln_tensor_t *t, const int64_t **v, size_t *n, kiln_error_t *err) {
    return view(t, KILN_INT64, _Alignof(int64_t), (const void **)v, n, err);
}
bool kiln_tensor_u8(const kiln_tensor_t *t, const uint8_t **v, size_t *n, kiln_error_t *err) {
    return view(t, KILN_UINT8, 1, (const void **)v, n, err);
}
bool kiln_tensor_bytes(const kiln_tensor_t *t, size_t *count, kiln_error_t *err) {
    if (!kiln_tensor_expect(t, KILN_BYTES, err)) return false;
    *count = t->elements.len;
    return true;
}

/* ---- outputs ---------------------------------------------------------------- */

kiln_tensor_t *kiln_output_new(kiln_outputs_t *outputs, const char *name, kiln_datatype_t datatype,
                               const int64_t *shape, size_t ndims, kiln_error_t *err) {
    kiln_tensor_t probe;
    memset(&probe, 0, sizeof probe);
    probe.name.ptr = (uint8_t *)name;
    probe.name.len = strlen(name);
    probe.shape.ptr = (int64_t *)shape;
    probe.shape.len = ndims;
    size_t count, size = kiln_datatype_size(datatype);
    if (!kiln_tensor_count(&probe, &count, err)) return NULL;
    if (size && count > SIZE_MAX / size) {
        kiln_invalid(err, "output '%s' is too large", name);
        return NULL;
    }
    outputs->ptr = xrealloc(outputs->ptr, (outputs->len + 1) * sizeof *outputs->ptr);
    kiln_tensor_t *t = &outputs->ptr[outputs->len++];
    memset(t, 0, sizeof *t);
    t->name = dup_str(name);
    t->datatype = datatype;
    if (ndims) {
        t->shape.ptr = xmalloc(ndims * sizeof(int64_t));
        memcpy(t->shape.ptr, shape, ndims * sizeof(int64_t));
        t->shape.len = ndims;
    }
    if (size && count) {
        t->data.ptr = xcalloc(count, size);
        t->data.len = count * size;
    } else if (!size && count) {
        t->elements.ptr = xcalloc(count, sizeof *t->elements.ptr);
        t->elements.len = count;
    }
    return t;
}

bool kiln_output_copy(kiln_outputs_t *outputs, const char *name, kiln_datatype_t datatype,
                      const int64_t *shape, size_t ndims, const void *data, kiln_error_t *err) {
    if (datatype == KILN_BYTES) return kiln_internal(err, "kiln_output_copy: BYTES outputs take kiln_bytes_set");
    kiln_tensor_t *t = kiln_output_new(outputs, name, datatype, shape, ndims, err);
    if (!t) return false;
    if (t->data.len) memcpy(t->data.ptr, data, t->data.len);
    return true;
}

void kiln_bytes_set(kiln_tensor_t *t, size_t i, const void *data, size_t len) {
    if (i >= t->elements.len) abort(); /* a bug in the plugin: trap */
    plugin_list_u8_t *e = &t->elements.ptr[i];
    plugin_list_u8_free(e);
    if (len) {
        e->ptr = xmalloc(len);
        memcpy(e->ptr, data, len);
        e->len = len;
    }
}

void kiln_bytes_set_str(kiln_tensor_t *t, size_t i, const char *s) { kiln_bytes_set(t, i, s, strlen(s)); }

/* ---- config parameters ----------------------------------------------------- */

char *kiln_config_get(const char *key) {
    plugin_string_t k = {(uint8_t *)key, strlen(key)};
    plugin_string_t v = {NULL, 0};
    if (!kiln_plugin_host_get_parameter(&k, &v)) return NULL;
    char *out = xmalloc(v.len + 1);
    if (v.len) memcpy(out, v.ptr, v.len);
    out[v.len] = 0;
    plugin_string_free(&v);
    return out;
}

static const char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

static bool parse_long(const char *s, void *value) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno != 0) return false;
    *(long *)value = v;
    return true;
}

static bool parse_double(const char *s, void *value) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno != 0 || !isfinite(v)) return false;
    *(double *)value = v;
    return true;
}

/* Parameter `key`, trimmed, through `parse` (which writes *value only on
 * success). Absent: true with *absent set. Unparsable: false with an
 * unavailable error naming the parameter, its value and `what` it should be. */
static bool config_parse(const char *key, bool (*parse)(const char *, void *), void *value,
                         bool *absent, const char *what, kiln_error_t *err) {
    char *raw = kiln_config_get(key);
    *absent = !raw;
    if (!raw) return true;
    char *copy = xmalloc(strlen(raw) + 1);
    strcpy(copy, raw);
    bool ok = parse(trim(copy), value);
    if (!ok) kiln_unavailable(err, "config parameter '%s': cannot parse '%s' as %s", key, raw, what);
    free(copy);
    free(raw);
    return ok;
}

bool kiln_config_long(const char *key, long fallback, long *value, kiln_error_t *err) {
    bool absent;
    bool ok = config_parse(key, parse_long, value, &absent, "an integer", err);
    if (absent) *value = fallback;
    return ok;
}

bool kiln_config_double(const char *key, double fallback, double *value, kiln_error_t *err) {
    bool absent;
    bool ok = config_parse(key, parse_double, value, &absent, "a number", err);
    if (absent) *value = fallback;
    return ok;
}

/* ---- request parameters ------------------------------------------------- */

const kiln_param_value_t *kiln_param(const kiln_params_t *params, const char *key) {
    for (size_t i = 0; i < params->len; i++)
        if (kiln_name_is(&params->ptr[i].key, key)) return &params->ptr[i].value;
    return NULL;
}

/* ---- logging and time ----------------------------------------------------- */

void kiln_log(kiln_log_level_t level, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    char *text = small;
    if ((size_t)n >= sizeof small) {
        text = xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    plugin_string_t message = {(uint8_t *)text, (size_t)n};
    plugin_list_tuple2_string_string_t fields = {NULL, 0};
    kiln_plugin_host_log(level, &message, &fields);
    if (text != small) free(text);
}

uint64_t kiln_now_ns(void) { return kiln_plugin_host_monotonic_now(); }
