package main

import (
	"math"
	"testing"

	kiln "kiln.dev/plugin"
)

// The plugin's logic, natively (go test): process is a plain function.

func call(config map[string]string, inputs ...kiln.Tensor) ([]kiln.Tensor, error) {
	return process(&kiln.Request{Inputs: inputs, Config: config})
}

func TestNormalize(t *testing.T) {
	x := kiln.NewFloat32("INPUT", []int64{2, 3}, []float32{1.5, 3.5, -0.5, 0, 7.5, 11.5})
	out, err := call(map[string]string{"mean": "1.5", "std": "2"}, x)
	if err != nil || len(out) != 1 || out[0].Name != "OUTPUT" || len(out[0].Shape) != 2 {
		t.Fatalf("%+v %v", out, err)
	}
	got, _ := out[0].Float32s()
	for i, want := range []float32{0, 1, -1, -0.75, 3, 5} {
		if got[i] != want {
			t.Errorf("OUTPUT[%d] = %v, want %v", i, got[i], want)
		}
	}
}

func TestDefaultsAndForms(t *testing.T) {
	out, err := call(nil, kiln.NewFloat32("OTHER", []int64{1}, []float32{9}),
		kiln.NewFloat32("INPUT", []int64{2}, []float32{2, float32(math.Inf(-1))}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := out[0].Float32s(); got[0] != 2 || !math.IsInf(float64(got[1]), -1) {
		t.Errorf("got %v", got)
	}
	out, err = call(map[string]string{"mean": " +.5e1 ", "std": "-2."}, kiln.NewFloat32("INPUT", []int64{1}, []float32{1}))
	if got, _ := out[0].Float32s(); err != nil || got[0] != 2 {
		t.Errorf("got %v %v", got, err)
	}
}

func TestErrors(t *testing.T) {
	one := kiln.NewFloat32("INPUT", []int64{1}, []float32{1})
	cases := []struct {
		config map[string]string
		inputs []kiln.Tensor
		want   string
	}{
		{map[string]string{"std": "0"}, []kiln.Tensor{one}, "config parameter 'std' must not be 0"},
		{map[string]string{"std": " 0.0 "}, []kiln.Tensor{one}, "config parameter 'std' must not be 0"},
		{map[string]string{"std": "1e-50"}, []kiln.Tensor{one}, "config parameter 'std' must not be 0"},
		{map[string]string{"std": "nan"}, []kiln.Tensor{one}, "config parameter 'std' must be a finite number, got 'nan'"},
		{map[string]string{"std": "inf"}, []kiln.Tensor{one}, "config parameter 'std' must be a finite number, got 'inf'"},
		{map[string]string{"std": ""}, []kiln.Tensor{one}, "config parameter 'std' must be a finite number, got ''"},
		{map[string]string{"std": "two"}, []kiln.Tensor{one}, "config parameter 'std' must be a finite number, got 'two'"},
		{map[string]string{"mean": "0x10"}, []kiln.Tensor{one}, "config parameter 'mean' must be a finite number, got '0x10'"},
		{map[string]string{"mean": "1e999"}, []kiln.Tensor{one}, "config parameter 'mean' must be a finite number, got '1e999'"},
		{map[string]string{"mean": "1_0"}, []kiln.Tensor{one}, "config parameter 'mean' must be a finite number, got '1_0'"},
		{map[string]string{"mean": "1.5x", "std": "2"}, []kiln.Tensor{one}, "config parameter 'mean' must be a finite number, got '1.5x'"},
		{nil, []kiln.Tensor{kiln.NewFloat32("OTHER", []int64{1}, []float32{1})}, "missing input tensor 'INPUT' (the request has: OTHER)"},
		{nil, nil, "missing input tensor 'INPUT' (the request has: none)"},
		{nil, []kiln.Tensor{kiln.NewInt32("INPUT", []int64{1}, []int32{3})}, "tensor 'INPUT' is INT32, expected FP32"},
	}
	for _, c := range cases {
		_, err := call(c.config, c.inputs...)
		if err == nil || err.Error() != c.want || kiln.KindOf(err) != kiln.KindInvalidArgument {
			t.Errorf("%v: got %v, want %q", c.config, err, c.want)
		}
	}
}
