/*
 * kiln_plugin.h: the C SDK for kiln plugins (ABI kiln:plugin@1.0.0, see
 * ../ABI.md). A thin layer over the wit-bindgen C bindings in bindings/
 * (generated from ../wit/v1.0.0/plugin.wit by generate.sh; never edit them).
 *
 * A plugin implements two functions and links kiln_plugin.c and the
 * bindings; the SDK defines the component's exports, frees the inputs after
 * kiln_plugin_process returns and hands the outputs to kiln:
 *
 *     #include "kiln_plugin.h"
 *
 *     void kiln_plugin_metadata(kiln_metadata_t *meta) {
 *         static const int64_t any[] = {-1};
 *         kiln_metadata_init(meta, "double", "1.0.0");
 *         kiln_metadata_input(meta, "INPUT", KILN_FP32, any, 1);
 *         kiln_metadata_output(meta, "OUTPUT", KILN_FP32, any, 1);
 *     }
 *
 *     bool kiln_plugin_process(const kiln_inputs_t *inputs, const kiln_params_t *params,
 *                              kiln_outputs_t *outputs, kiln_error_t *err) {
 *         const kiln_tensor_t *x = kiln_input(inputs, "INPUT", err);
 *         const float *v;
 *         size_t n;
 *         if (!x || !kiln_tensor_f32(x, &v, &n, err)) return false;
 *         kiln_tensor_t *y = kiln_output_new(outputs, "OUTPUT", KILN_FP32, x->shape.ptr, x->shape.len, err);
 *         if (!y) return false;
 *         float *out = (float *)y->data.ptr;
 *         for (size_t i = 0; i < n; i++) out[i] = 2 * v[i];
 *         return true;
 *     }
 *
 * Build (plugins/c/build.sh does all of this):
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         my_plugin.c sdk/c/kiln_plugin.c sdk/c/bindings/plugin.c \
 *         sdk/c/bindings/plugin_component_type.o -o core.wasm
 *     wasm-tools component new core.wasm -o my_plugin.wasm
 *
 * Rules (the ABI's, in C terms):
 *  - Return false with `err` set (kiln_fail and friends) for anything a
 *    client can cause; abort() or a wild pointer traps, kiln answers INTERNAL
 *    and replaces the instance.
 *  - Inputs are read-only views, valid during kiln_plugin_process only.
 *  - Everything kiln receives must be heap memory the SDK can free(): build
 *    outputs with kiln_output_new / kiln_output_copy / kiln_bytes_set only.
 *  - Instance memory persists between calls (static caches work) but an
 *    instance can be replaced at any time; instances never share memory.
 *  - No filesystem, network or environment: data goes into the module or
 *    into config parameters (kiln_config_get).
 */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bindings/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_PLUGIN_ABI "kiln:plugin@1.0.0"

/* ---- types -------------------------------------------------------------- */

typedef kiln_plugin_types_datatype_t kiln_datatype_t;
typedef kiln_plugin_types_tensor_t kiln_tensor_t;                  /* name, datatype, shape, data, elements */
typedef exports_kiln_plugin_processor_list_tensor_t kiln_inputs_t;  /* ptr, len */
typedef exports_kiln_plugin_processor_list_tensor_t kiln_outputs_t;
typedef exports_kiln_plugin_processor_list_parameter_t kiln_params_t;
typedef kiln_plugin_types_parameter_value_t kiln_param_value_t;     /* tag + val */
typedef kiln_plugin_types_error_t kiln_error_t;
typedef kiln_plugin_types_error_kind_t kiln_error_kind_t;
typedef kiln_plugin_types_metadata_t kiln_metadata_t;
typedef kiln_plugin_host_log_level_t kiln_log_level_t;

enum {
    KILN_BOOL = KILN_PLUGIN_TYPES_DATATYPE_BOOL,
    KILN_UINT8 = KILN_PLUGIN_TYPES_DATATYPE_UINT8,
    KILN_UINT16 = KILN_PLUGIN_TYPES_DATATYPE_UINT16,
    KILN_UINT32 = KILN_PLUGIN_TYPES_DATATYPE_UINT32,
    KILN_UINT64 = KILN_PLUGIN_TYPES_DATATYPE_UINT64,
    KILN_INT8 = KILN_PLUGIN_TYPES_DATATYPE_INT8,
    KILN_INT16 = KILN_PLUGIN_TYPES_DATATYPE_INT16,
    KILN_INT32 = KILN_PLUGIN_TYPES_DATATYPE_INT32,
    KILN_INT64 = KILN_PLUGIN_TYPES_DATATYPE_INT64,
    KILN_FP16 = KILN_PLUGIN_TYPES_DATATYPE_FP16,
    KILN_FP32 = KILN_PLUGIN_TYPES_DATATYPE_FP32,
    KILN_FP64 = KILN_PLUGIN_TYPES_DATATYPE_FP64,
    KILN_BF16 = KILN_PLUGIN_TYPES_DATATYPE_BF16,
    KILN_BYTES = KILN_PLUGIN_TYPES_DATATYPE_BYTES,
};

enum {
    KILN_INVALID_ARGUMENT = KILN_PLUGIN_TYPES_ERROR_KIND_INVALID_ARGUMENT, /* gRPC INVALID_ARGUMENT, HTTP 400 */
    KILN_UNAVAILABLE = KILN_PLUGIN_TYPES_ERROR_KIND_UNAVAILABLE,           /* gRPC UNAVAILABLE, HTTP 503 */
    KILN_INTERNAL = KILN_PLUGIN_TYPES_ERROR_KIND_INTERNAL,                 /* gRPC INTERNAL, HTTP 500 */
};

enum {
    KILN_TRACE = KILN_PLUGIN_HOST_LOG_LEVEL_TRACE,
    KILN_DEBUG = KILN_PLUGIN_HOST_LOG_LEVEL_DEBUG,
    KILN_INFO = KILN_PLUGIN_HOST_LOG_LEVEL_INFO,
    KILN_WARN = KILN_PLUGIN_HOST_LOG_LEVEL_WARN,
    KILN_ERROR = KILN_PLUGIN_HOST_LOG_LEVEL_ERROR,
};

/* ---- what a plugin implements ------------------------------------------ */

/* Declared inputs and outputs (kiln checks names and datatypes against
 * config.pbtxt at load). Cheap, never fails, same answer every time. */
void kiln_plugin_metadata(kiln_metadata_t *meta);

/* One request (or batch). Return true with every output config.pbtxt
 * declares added to `outputs`, or false with `err` set. `outputs` is freed
 * by the SDK when false is returned. */
bool kiln_plugin_process(const kiln_inputs_t *inputs, const kiln_params_t *params,
                         kiln_outputs_t *outputs, kiln_error_t *err);

/* ---- metadata ------------------------------------------------------------ */

void kiln_metadata_init(kiln_metadata_t *meta, const char *name, const char *version);
/* dims exclude the batch dimension; -1 is a variable dimension. */
void kiln_metadata_input(kiln_metadata_t *meta, const char *name, kiln_datatype_t datatype,
                         const int64_t *dims, size_t ndims);
void kiln_metadata_output(kiln_metadata_t *meta, const char *name, kiln_datatype_t datatype,
                          const int64_t *dims, size_t ndims);

/* ---- errors ---------------------------------------------------------------
 * Set `err` (printf-style message) and return false, so that
 * `return kiln_invalid(err, "...", ...);` ends a failing process call. */

bool kiln_fail(kiln_error_t *err, kiln_error_kind_t kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define kiln_invalid(err, ...) kiln_fail((err), KILN_INVALID_ARGUMENT, __VA_ARGS__)
#define kiln_unavailable(err, ...) kiln_fail((err), KILN_UNAVAILABLE, __VA_ARGS__)
#define kiln_internal(err, ...) kiln_fail((err), KILN_INTERNAL, __VA_ARGS__)

/* ---- inputs ---------------------------------------------------------------- */

/* The input called `name`, or NULL with an invalid-argument error
 * "missing input tensor 'X' (the request has: A, B)". */
const kiln_tensor_t *kiln_input(const kiln_inputs_t *inputs, const char *name, kiln_error_t *err);
/* The input called `name`, or NULL (optional inputs). */
const kiln_tensor_t *kiln_input_find(const kiln_inputs_t *inputs, const char *name);

/* Number of elements of the shape (1 for a scalar); false with an
 * invalid-argument error on a negative or overflowing shape. */
bool kiln_tensor_count(const kiln_tensor_t *t, size_t *count, kiln_error_t *err);
/* Checks that `t` is `datatype` and that its data (or, for BYTES, its
 * element count) matches its shape. */
bool kiln_tensor_expect(const kiln_tensor_t *t, kiln_datatype_t datatype, kiln_error_t *err);
/* Typed, zero-copy views of a checked tensor. The pointer is into the
 * input's data (malloc'd by the SDK's allocator, so suitably aligned). */
bool kiln_tensor_f32(const kiln_tensor_t *t, const float **values, size_t *count, kiln_error_t *err);
bool kiln_tensor_f64(const kiln_tensor_t *t, const double **values, size_t *count, kiln_error_t *err);
bool kiln_tensor_i32(const kiln_tensor_t *t, const int32_t **values, size_t *count, kiln_error_t *err);
bool kiln_tensor_i64(const kiln_tensor_t *t, const int64_t **values, size_t *count, kiln_error_t *err);
bool kiln_tensor_u8(const kiln_tensor_t *t, const uint8_t **values, size_t *count, kiln_error_t *err);
/* BYTES: checks the tensor; element i is t->elements.ptr[i] (.ptr, .len). */
bool kiln_tensor_bytes(const kiln_tensor_t *t, size_t *count, kiln_error_t *err);

/* Bytes per element of a datatype; 0 for BYTES. */
size_t kiln_datatype_size(kiln_datatype_t datatype);
/* "FP32", "BYTES", ... (KServe names). */
const char *kiln_datatype_name(kiln_datatype_t datatype);
/* Writes "[2, 3]" into buf (always NUL-terminated); returns buf. */
char *kiln_shape_str(const int64_t *shape, size_t ndims, char *buf, size_t size);
/* Compares a tensor name (not NUL-terminated) with a C string. */
bool kiln_name_is(const plugin_string_t *name, const char *s);

/* ---- outputs ---------------------------------------------------------------- */

/* Appends an output of `datatype` and `shape`: numeric data zero-filled
 * (fill t->data.ptr, count * kiln_datatype_size bytes), BYTES with `count`
 * empty elements (fill them with kiln_bytes_set). Returns NULL with an
 * error on a bad shape. The pointer is valid until the next output is
 * added. */
kiln_tensor_t *kiln_output_new(kiln_outputs_t *outputs, const char *name, kiln_datatype_t datatype,
                               const int64_t *shape, size_t ndims, kiln_error_t *err);
/* kiln_output_new and a copy of `data` (count * element size bytes). */
bool kiln_output_copy(kiln_outputs_t *outputs, const char *name, kiln_datatype_t datatype,
                      const int64_t *shape, size_t ndims, const void *data, kiln_error_t *err);
/* Sets BYTES element i of an output to a copy of data[0..len). */
void kiln_bytes_set(kiln_tensor_t *t, size_t i, const void *data, size_t len);
void kiln_bytes_set_str(kiln_tensor_t *t, size_t i, const char *s);

/* ---- config.pbtxt parameters ------------------------------------------- */

/* A malloc'd, NUL-terminated copy of parameter `key` (free() it), or NULL. */
char *kiln_config_get(const char *key);
/* Integer / number parameters with a default when absent; false with an
 * unavailable error "config parameter 'k': cannot parse 'v' as ..." when
 * the value does not parse. */
bool kiln_config_long(const char *key, long fallback, long *value, kiln_error_t *err);
bool kiln_config_double(const char *key, double fallback, double *value, kiln_error_t *err);

/* ---- request parameters ------------------------------------------------ */

/* The request parameter `key`, or NULL. Check ->tag
 * (KILN_PLUGIN_TYPES_PARAMETER_VALUE_{BOOL,INT64,DOUBLE,TEXT}). */
const kiln_param_value_t *kiln_param(const kiln_params_t *params, const char *key);

/* ---- logging and time ---------------------------------------------------- */

void kiln_log(kiln_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define kiln_trace(...) kiln_log(KILN_TRACE, __VA_ARGS__)
#define kiln_debug(...) kiln_log(KILN_DEBUG, __VA_ARGS__)
#define kiln_info(...) kiln_log(KILN_INFO, __VA_ARGS__)
#define kiln_warn(...) kiln_log(KILN_WARN, __VA_ARGS__)
#define kiln_error(...) kiln_log(KILN_ERROR, __VA_ARGS__)

/* kiln's monotonic clock, nanoseconds (for measuring durations). */
uint64_t kiln_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif /* KILN_PLUGIN_H */
