package kiln

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Tensor is an input or output tensor (sdk/ABI.md, "tensor").
//
// Shape has one entry per dimension ([] is a scalar, a 0 makes an empty
// tensor); when the model is batched the first dimension is the batch.
// Data holds the elements of every datatype but Bytes: row-major, packed,
// little-endian, exactly ElementCount × DataType.Size() bytes. Elements holds
// the elements of a Bytes tensor, one byte string each (KServe's 4-byte
// length framing is removed on input and added on output by the SDK).
//
// The Data and Elements of inputs point into the request buffer: modifying
// them in place and returning them as an output costs no copy.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     []byte
	Elements [][]byte
}

// ElementCount is the product of the shape's dimensions (1 for a scalar).
func (t *Tensor) ElementCount() (int, error) {
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, InvalidArgument("tensor '%s': shape %s has a negative dimension", t.Name, shapeString(t.Shape))
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<40 {
			return 0, InvalidArgument("tensor '%s': shape %s is too large", t.Name, shapeString(t.Shape))
		}
		n = lo
	}
	return int(n), nil
}

// Check reports (as invalid-argument) whether Data, or Elements for Bytes,
// holds exactly the shape's number of elements, as kiln checks every output.
func (t *Tensor) Check() error {
	count, err := t.ElementCount()
	if err != nil {
		return err
	}
	if !t.DataType.valid() {
		return InvalidArgument("tensor '%s' has an unknown datatype %d", t.Name, uint8(t.DataType))
	}
	if t.DataType == Bytes {
		if len(t.Data) != 0 {
			return InvalidArgument("tensor '%s' is BYTES but has raw data (BYTES uses Elements)", t.Name)
		}
		if len(t.Elements) != count {
			return InvalidArgument("tensor '%s': shape %s needs %d BYTES elements, it has %d",
				t.Name, shapeString(t.Shape), count, len(t.Elements))
		}
		return nil
	}
	if len(t.Elements) != 0 {
		return InvalidArgument("tensor '%s' is %s but has BYTES elements", t.Name, t.DataType)
	}
	if want := count * t.DataType.Size(); len(t.Data) != want {
		return InvalidArgument("tensor '%s': shape %s of %s needs %d bytes, data has %d",
			t.Name, shapeString(t.Shape), t.DataType, want, len(t.Data))
	}
	return nil
}

// expect checks the datatype and the size of the data.
func (t *Tensor) expect(d DataType) error {
	if t.DataType != d {
		return InvalidArgument("tensor '%s' is %s, expected %s", t.Name, t.DataType, d)
	}
	return t.Check()
}

// Float32s returns the elements of an FP32 tensor (a copy: writing to it
// leaves Data as it is). It fails with invalid-argument naming the tensor if
// the datatype is not FP32 or Data does not match the shape.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.expect(FP32); err != nil {
		return nil, err
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Float64s returns the elements of an FP64 tensor, as Float32s.
func (t *Tensor) Float64s() ([]float64, error) {
	if err := t.expect(FP64); err != nil {
		return nil, err
	}
	out := make([]float64, len(t.Data)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

// Int32s returns the elements of an INT32 tensor, as Float32s.
func (t *Tensor) Int32s() ([]int32, error) {
	if err := t.expect(Int32); err != nil {
		return nil, err
	}
	out := make([]int32, len(t.Data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Int64s returns the elements of an INT64 tensor, as Float32s.
func (t *Tensor) Int64s() ([]int64, error) {
	if err := t.expect(Int64); err != nil {
		return nil, err
	}
	out := make([]int64, len(t.Data)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

// Bools returns the elements of a BOOL tensor (any nonzero byte is true).
func (t *Tensor) Bools() ([]bool, error) {
	if err := t.expect(Bool); err != nil {
		return nil, err
	}
	out := make([]bool, len(t.Data))
	for i, b := range t.Data {
		out[i] = b != 0
	}
	return out, nil
}

// Strings returns the elements of a BYTES tensor as strings (copies; they
// need not be UTF-8).
func (t *Tensor) Strings() ([]string, error) {
	if err := t.expect(Bytes); err != nil {
		return nil, err
	}
	out := make([]string, len(t.Elements))
	for i, e := range t.Elements {
		out[i] = string(e)
	}
	return out, nil
}

// NewFloat32 makes an FP32 tensor. len(values) must match shape (Serve
// checks every output and fails the call as internal if it does not).
func NewFloat32(name string, shape []int64, values []float32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, DataType: FP32, Shape: shape, Data: data}
}

// NewFloat64 makes an FP64 tensor, as NewFloat32.
func NewFloat64(name string, shape []int64, values []float64) Tensor {
	data := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(v))
	}
	return Tensor{Name: name, DataType: FP64, Shape: shape, Data: data}
}

// NewInt32 makes an INT32 tensor, as NewFloat32.
func NewInt32(name string, shape []int64, values []int32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
	}
	return Tensor{Name: name, DataType: Int32, Shape: shape, Data: data}
}

// NewInt64 makes an INT64 tensor, as NewFloat32.
func NewInt64(name string, shape []int64, values []int64) Tensor {
	data := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(data[8*i:], uint64(v))
	}
	return Tensor{Name: name, DataType: Int64, Shape: shape, Data: data}
}

// NewBool makes a BOOL tensor, as NewFloat32.
func NewBool(name string, shape []int64, values []bool) Tensor {
	data := make([]byte, len(values))
	for i, v := range values {
		if v {
			data[i] = 1
		}
	}
	return Tensor{Name: name, DataType: Bool, Shape: shape, Data: data}
}

// NewBytes makes a BYTES tensor from byte strings (not copied).
func NewBytes(name string, shape []int64, elements [][]byte) Tensor {
	return Tensor{Name: name, DataType: Bytes, Shape: shape, Elements: elements}
}

// NewStrings makes a BYTES tensor from strings.
func NewStrings(name string, shape []int64, values []string) Tensor {
	elements := make([][]byte, len(values))
	for i, s := range values {
		elements[i] = []byte(s)
	}
	return NewBytes(name, shape, elements)
}

// shapeString formats a shape as "[2, 3]" (as the other SDKs' messages do).
func shapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
