/*
 * classify_postprocess: logits in, Triton classification strings out.
 *
 * Input `LOGITS` (FP32): [K] scores of K classes, or [N, K] batched (any
 * leading dimensions; the last one holds the classes).
 * Output `CLASSES` (BYTES): [k] or [N, k], the top k classes of each row by
 * descending probability (softmax of the logits; ties: lower index first),
 * each as Triton's classification string "score:index:label", e.g.
 * "0.997241:3:three" (score with 6 decimals, like Triton and kiln's
 * `classification` output parameter). A class without a label is
 * "score:index".
 *
 * Config parameters (config.pbtxt `parameters`, string values):
 *   top_k    number of classes per row (default 1; more than K gives K)
 *   labels   comma-separated class labels in index order, e.g.
 *            "zero,one,two"; spaces around labels are trimmed. Plugins have
 *            no filesystem, so labels travel in config.pbtxt, not in a
 *            labels.txt file.
 *   softmax  "true" (default) or "false" (scores are the inputs as given,
 *            e.g. when the model already outputs probabilities)
 *   format   "classification" (default) or "label" (the label alone, or
 *            the index when the class has no label)
 *
 * Errors: a wrong datatype or shape, or a NaN logit, is invalid-argument
 * naming `LOGITS`; a bad config parameter is unavailable, naming the key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_plugin.h"

#define INPUT "LOGITS"
#define OUTPUT "CLASSES"

typedef struct {
    long top_k;
    bool softmax;
    bool label_only;
    size_t n_labels;
    char **labels; /* n_labels entries; "" for a class without a label */
    kiln_error_t error; /* a config error, reported by every call */
    bool ready;
} settings_t;

static settings_t S;

static bool config_bool(const char *key, bool fallback, bool *value, kiln_error_t *err) {
    char *raw = kiln_config_get(key);
    if (!raw) { *value = fallback; return true; }
    bool ok = true;
    if (!strcmp(raw, "true")) *value = true;
    else if (!strcmp(raw, "false")) *value = false;
    else ok = kiln_unavailable(err, "config parameter '%s': cannot parse '%s' as bool (true or false)", key, raw);
    free(raw);
    return ok;
}

static char *dup_trimmed(const char *s, size_t len) {
    while (len && (*s == ' ' || *s == '\t')) { s++; len--; }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    char *out = malloc(len + 1);
    if (!out) abort();
    memcpy(out, s, len);
    out[len] = 0;
    return out;
}

static bool load_settings(kiln_error_t *err) {
    if (!kiln_config_long("top_k", 1, &S.top_k, err)) return false;
    if (S.top_k < 1) return kiln_unavailable(err, "config parameter 'top_k': %ld is not a positive integer", S.top_k);
    if (!config_bool("softmax", true, &S.softmax, err)) return false;
    char *format = kiln_config_get("format");
    bool ok = true;
    if (!format || !strcmp(format, "classification")) S.label_only = false;
    else if (!strcmp(format, "label")) S.label_only = true;
    else ok = kiln_unavailable(err, "config parameter 'format': '%s' is not supported (classification or label)", format);
    free(format);
    if (!ok) return false;
    char *labels = kiln_config_get("labels");
    if (labels && *labels) {
        size_t n = 1;
        for (const char *p = labels; *p; p++) n += *p == ',';
        S.labels = calloc(n, sizeof *S.labels);
        if (!S.labels) abort();
        const char *start = labels;
        for (size_t i = 0; i < n; i++) {
            const char *end = strchr(start, ',');
            size_t len = end ? (size_t)(end - start) : strlen(start);
            S.labels[i] = dup_trimmed(start, len);
            start += len + 1;
        }
        S.n_labels = n;
    }
    free(labels);
    return true;
}

/* Config parameters are fixed while a model version is loaded: read them
 * once per instance, and keep a config error to report on every call. */
static const settings_t *settings(kiln_error_t *err) {
    if (!S.ready) {
        memset(&S.error, 0, sizeof S.error);
        if (!load_settings(&S.error) && !S.error.message.len) kiln_internal(&S.error, "bad configuration");
        S.ready = true;
    }
    if (S.error.message.len) {
        kiln_fail(err, S.error.kind, "%.*s", (int)S.error.message.len, (const char *)S.error.message.ptr);
        return NULL;
    }
    return &S;
}

void kiln_plugin_metadata(kiln_metadata_t *meta) {
    static const int64_t any[] = {-1};
    kiln_error_t err;
    memset(&err, 0, sizeof err);
    const settings_t *s = settings(&err);
    if (s) kiln_debug("classify_postprocess: top_k %ld, %zu labels", s->top_k, s->n_labels);
    else kiln_error("classify_postprocess: %.*s", (int)err.message.len, (const char *)err.message.ptr);
    plugin_string_free(&err.message);
    kiln_metadata_init(meta, "classify_postprocess", "1.0.0");
    kiln_metadata_input(meta, INPUT, KILN_FP32, any, 1);
    kiln_metadata_output(meta, OUTPUT, KILN_BYTES, any, 1);
}

/* Descending score, then ascending index (scores are never NaN here). */
static const double *cmp_scores;
static int by_score(const void *a, const void *b) {
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (cmp_scores[i] > cmp_scores[j]) return -1;
    if (cmp_scores[i] < cmp_scores[j]) return 1;
    return i < j ? -1 : i > j;
}

bool kiln_plugin_process(const kiln_inputs_t *inputs, const kiln_params_t *params, kiln_outputs_t *outputs,
                         kiln_error_t *err) {
    (void)params;
    const settings_t *s = settings(err);
    if (!s) return false;
    const kiln_tensor_t *t = kiln_input(inputs, INPUT, err);
    const float *logits;
    size_t count;
    if (!t || !kiln_tensor_f32(t, &logits, &count, err)) return false;
    if (t->shape.len == 0 || t->shape.ptr[t->shape.len - 1] == 0) {
        char shape[160];
        return kiln_invalid(err, "input '" INPUT "' has shape %s: expected [K] or [N, K] with K > 0 classes",
                            kiln_shape_str(t->shape.ptr, t->shape.len, shape, sizeof shape));
    }
    size_t classes = (size_t)t->shape.ptr[t->shape.len - 1];
    size_t rows = count / classes;
    size_t k = (size_t)s->top_k < classes ? (size_t)s->top_k : classes;

    int64_t shape[16];
    if (t->shape.len > sizeof shape / sizeof shape[0]) return kiln_invalid(err, "input '" INPUT "' has too many dimensions");
    memcpy(shape, t->shape.ptr, t->shape.len * sizeof(int64_t));
    shape[t->shape.len - 1] = (int64_t)k;
    kiln_tensor_t *out = kiln_output_new(outputs, OUTPUT, KILN_BYTES, shape, t->shape.len, err);
    if (!out) return false;

    double *scores = malloc(classes * sizeof *scores);
    size_t *order = malloc(classes * sizeof *order);
    if (!scores || !order) abort();
    bool ok = true;
    for (size_t r = 0; r < rows && ok; r++) {
        const float *row = logits + r * classes;
        double max = -INFINITY;
        for (size_t i = 0; i < classes; i++) {
            if (isnan(row[i])) {
                ok = kiln_invalid(err, "input '" INPUT "' has a NaN at row %zu, class %zu", r, i);
                break;
            }
            if (row[i] > max) max = row[i];
        }
        if (!ok) break;
        double sum = 0;
        for (size_t i = 0; i < classes; i++) {
            double x = row[i];
            if (!s->softmax) scores[i] = x;
            else if (isinf(max)) scores[i] = max > 0 ? (double)(x == max) : 1.0; /* +inf wins; all -inf: uniform */
            else scores[i] = exp(x - max); /* <= 1: no overflow */
            sum += scores[i];
            order[i] = i;
        }
        if (s->softmax)
            for (size_t i = 0; i < classes; i++) scores[i] /= sum;
        cmp_scores = scores;
        qsort(order, classes, sizeof *order, by_score);
        for (size_t j = 0; j < k; j++) {
            size_t i = order[j];
            const char *label = i < s->n_labels ? s->labels[i] : "";
            char text[512];
            int n;
            if (s->label_only) n = *label ? snprintf(text, sizeof text, "%s", label) : snprintf(text, sizeof text, "%zu", i);
            else if (*label) n = snprintf(text, sizeof text, "%f:%zu:%s", scores[i], i, label);
            else n = snprintf(text, sizeof text, "%f:%zu", scores[i], i);
            if (n < 0) n = 0;
            if ((size_t)n < sizeof text) {
                kiln_bytes_set(out, r * k + j, text, (size_t)n);
            } else { /* a very long label */
                char *big = malloc((size_t)n + 1);
                if (!big) abort();
                if (s->label_only) snprintf(big, (size_t)n + 1, "%s", label);
                else snprintf(big, (size_t)n + 1, "%f:%zu:%s", scores[i], i, label);
                kiln_bytes_set(out, r * k + j, big, (size_t)n);
                free(big);
            }
        }
    }
    free(scores);
    free(order);
    return ok;
}
