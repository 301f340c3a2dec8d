package kiln

import (
	"math"
	"reflect"
	"testing"
)

func TestDataTypeNames(t *testing.T) {
	want := []string{"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
		"FP16", "FP32", "FP64", "BF16", "BYTES"}
	for i, name := range want {
		if got := DataType(i).String(); got != name {
			t.Errorf("DataType(%d) = %s, want %s", i, got, name)
		}
	}
	if FP32 != 10 || Bytes != 13 || FP32.Size() != 4 || Bytes.Size() != 0 || DataType(14).String() != "DataType(14)" {
		t.Error("datatype numbering")
	}
}

func TestTypedAccessors(t *testing.T) {
	f := NewFloat32("F", []int64{3}, []float32{1.5, float32(math.NaN()), -0})
	got, err := f.Float32s()
	if err != nil || got[0] != 1.5 || !math.IsNaN(float64(got[1])) || len(got) != 3 {
		t.Fatalf("Float32s = %v, %v", got, err)
	}
	d := NewFloat64("D", []int64{2}, []float64{1e300, -2})
	if v, err := d.Float64s(); err != nil || !reflect.DeepEqual(v, []float64{1e300, -2}) {
		t.Errorf("Float64s = %v, %v", v, err)
	}
	i := NewInt32("I", []int64{1, 2}, []int32{-1, 7})
	if v, err := i.Int32s(); err != nil || !reflect.DeepEqual(v, []int32{-1, 7}) {
		t.Errorf("Int32s = %v, %v", v, err)
	}
	l := NewInt64("L", nil, []int64{math.MinInt64})
	if v, err := l.Int64s(); err != nil || !reflect.DeepEqual(v, []int64{math.MinInt64}) {
		t.Errorf("Int64s = %v, %v", v, err)
	}
	b := NewBool("B", []int64{3}, []bool{true, false, true})
	b.Data[2] = 7
	if v, err := b.Bools(); err != nil || !reflect.DeepEqual(v, []bool{true, false, true}) {
		t.Errorf("Bools = %v, %v", v, err)
	}
}

func TestAccessorErrorsNameTheTensor(t *testing.T) {
	wrong := NewInt32("INPUT", []int64{1}, []int32{3})
	_, err := wrong.Float32s()
	if err == nil || err.Error() != "tensor 'INPUT' is INT32, expected FP32" || KindOf(err) != KindInvalidArgument {
		t.Errorf("got %v", err)
	}
	short := Tensor{Name: "IN", DataType: FP32, Shape: []int64{1, 3}, Data: make([]byte, 8)}
	if _, err := short.Float32s(); err == nil || err.Error() != "tensor 'IN': shape [1, 3] of FP32 needs 12 bytes, data has 8" {
		t.Errorf("got %v", err)
	}
	huge := Tensor{Name: "H", DataType: FP32, Shape: []int64{1 << 32, 1 << 32}}
	if _, err := huge.ElementCount(); err == nil || err.Error() != "tensor 'H': shape [4294967296, 4294967296] is too large" {
		t.Errorf("got %v", err)
	}
	if n, err := (&Tensor{}).ElementCount(); n != 1 || err != nil {
		t.Errorf("scalar: %d %v", n, err)
	}
}

func TestRequiredInput(t *testing.T) {
	r := &Request{Inputs: []Tensor{{Name: "A"}, {Name: "B"}}}
	if _, err := r.RequiredInput("C"); err == nil || err.Error() != "missing input tensor 'C' (the request has: A, B)" {
		t.Errorf("got %v", err)
	}
	if _, err := (&Request{}).RequiredInput("C"); err == nil || err.Error() != "missing input tensor 'C' (the request has: none)" {
		t.Errorf("got %v", err)
	}
	if b, err := r.RequiredInput("B"); err != nil || b != &r.Inputs[1] {
		t.Errorf("got %v %v", b, err)
	}
}
