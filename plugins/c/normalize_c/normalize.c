/*
 * normalize: FP32 INPUT (any shape) -> FP32 OUTPUT = (INPUT - mean) / std.
 *
 * `mean` and `std` are the model's config.pbtxt parameters (defaults 0 and
 * 1). A `std` of 0, or a value that is not a finite decimal number, fails
 * every request with invalid-argument naming the parameter; so does a
 * request without INPUT. The same plugin exists in every plugin language
 * (plugins/<lang>/normalize*); tests/test_plugin_conformance.py holds them
 * to one behaviour.
 *
 * Plain C against the C SDK (sdk/c), shipped as a core module of kiln's
 * core-module ABI: the marker export below tells kiln which world it
 * implements, and kiln wraps it into a component at load (no wasm-tools).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_plugin.h"

/* The core-module ABI's version marker (sdk/ABI.md). Never called. */
__attribute__((export_name("kiln_abi_version_1_0_0"))) void kiln_abi_version_1_0_0(void) {}

void kiln_plugin_metadata(kiln_metadata_t *meta) {
    static const int64_t any[] = {-1};
    kiln_metadata_init(meta, "normalize-c", "1.0.0");
    kiln_metadata_input(meta, "INPUT", KILN_FP32, any, 1);
    kiln_metadata_output(meta, "OUTPUT", KILN_FP32, any, 1);
}

/* A decimal number: optional sign, digits with an optional fraction, an
 * optional exponent; finite (strtod alone also takes "inf", "nan", hex). */
static bool parse_number(const char *text, double *value) {
    while (*text == ' ' || *text == '\t') text++;
    if (*text == '\0' || strspn(text, "0123456789+-.eE \t") != strlen(text)) return false;
    char *end;
    double v = strtod(text, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == text || *end != '\0' || !isfinite(v)) return false;
    *value = v;
    return true;
}

static bool param(const char *key, double fallback, double *value, kiln_error_t *err) {
    char *raw = kiln_config_get(key);
    if (!raw) {
        *value = fallback;
        return true;
    }
    bool ok = parse_number(raw, value);
    if (!ok) kiln_invalid(err, "config parameter '%s' must be a finite number, got '%s'", key, raw);
    free(raw);
    return ok;
}

bool kiln_plugin_process(const kiln_inputs_t *inputs, const kiln_params_t *params,
                         kiln_outputs_t *outputs, kiln_error_t *err) {
    (void)params;
    double mean, sd;
    if (!param("mean", 0, &mean, err) || !param("std", 1, &sd, err)) return false;
    if ((float)sd == 0) return kiln_invalid(err, "config parameter 'std' must not be 0");
    const kiln_tensor_t *x = kiln_input(inputs, "INPUT", err);
    const float *v;
    size_t n;
    if (!x || !kiln_tensor_f32(x, &v, &n, err)) return false;
    kiln_tensor_t *y = kiln_output_new(outputs, "OUTPUT", KILN_FP32, x->shape.ptr, x->shape.len, err);
    if (!y) return false;
    float *out = (float *)y->data.ptr;
    const float m = (float)mean, s = (float)sd;
    for (size_t i = 0; i < n; i++) out[i] = (v[i] - m) / s;
    return true;
}
