// normalize: FP32 INPUT (any shape) -> FP32 OUTPUT = (INPUT - mean) / std.
//
// mean and std are the model's config.pbtxt parameters (defaults 0 and 1).
// A std of 0, or a value that is not a finite decimal number, fails every
// request with invalid-argument naming the parameter; so does a request
// without INPUT.
//
// The same plugin exists in Rust, Zig, JavaScript, Python and
// AssemblyScript (plugins/<lang>/normalize); tests/test_plugin_conformance.py
// holds them all to the same behaviour. Built by plugins/go/build.sh into
// target/plugins/normalize_go.wasm, a WASI command module that kiln runs
// once per call (sdk/go/README.md).
package main

import (
	"strconv"
	"strings"

	kiln "kiln.dev/plugin"
)

var metadata = kiln.Metadata{
	Name:    "normalize-go",
	Version: "1.0.0",
	Inputs:  []kiln.Spec{{Name: "INPUT", DataType: kiln.FP32, Dims: []int64{-1}}},
	Outputs: []kiln.Spec{{Name: "OUTPUT", DataType: kiln.FP32, Dims: []int64{-1}}},
}

func main() {
	kiln.Serve(metadata, process)
}

// parseNumber accepts a decimal number: optional sign, digits with an
// optional fraction, an optional exponent; finite. (strconv.ParseFloat
// alone also takes "inf", "NaN", hexadecimal and underscores.)
func parseNumber(text string) (float64, bool) {
	if strings.Trim(text, "0123456789+-.eE") != "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(text, 64)
	return v, err == nil // out of range (1e999) is an error too
}

// param reads a number from the config, or returns def when it is absent.
func param(r *kiln.Request, key string, def float64) (float64, error) {
	raw, ok := r.Config[key]
	if !ok {
		return def, nil
	}
	v, ok := parseNumber(strings.TrimSpace(raw))
	if !ok {
		return 0, kiln.InvalidArgument("config parameter '%s' must be a finite number, got '%s'", key, raw)
	}
	return v, nil
}

func process(r *kiln.Request) ([]kiln.Tensor, error) {
	mean, err := param(r, "mean", 0)
	if err != nil {
		return nil, err
	}
	sd, err := param(r, "std", 1)
	if err != nil {
		return nil, err
	}
	m, s := float32(mean), float32(sd)
	if s == 0 {
		return nil, kiln.InvalidArgument("config parameter 'std' must not be 0")
	}
	in, err := r.RequiredInput("INPUT") // "missing input tensor 'INPUT' (the request has: ...)"
	if err != nil {
		return nil, err
	}
	x, err := in.Float32s() // "tensor 'INPUT' is INT32, expected FP32"
	if err != nil {
		return nil, err
	}
	for i, v := range x {
		x[i] = (v - m) / s
	}
	return []kiln.Tensor{kiln.NewFloat32("OUTPUT", in.Shape, x)}, nil
}
