package kiln

import "fmt"

// DataType is a tensor's element type. The values are the WIT case numbers
// of kiln:plugin's datatype, which the command protocol uses on the wire.
type DataType uint8

const (
	Bool   DataType = 0
	Uint8  DataType = 1
	Uint16 DataType = 2
	Uint32 DataType = 3
	Uint64 DataType = 4
	Int8   DataType = 5
	Int16  DataType = 6
	Int32  DataType = 7
	Int64  DataType = 8
	FP16   DataType = 9
	FP32   DataType = 10
	FP64   DataType = 11
	BF16   DataType = 12
	Bytes  DataType = 13 // KServe BYTES, config.pbtxt TYPE_STRING
)

var dataTypeNames = [...]string{"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
	"INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"}

var dataTypeSizes = [...]int{1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 2, 0}

// String returns the KServe name: "FP32", "BYTES", ...
func (d DataType) String() string {
	if int(d) < len(dataTypeNames) {
		return dataTypeNames[d]
	}
	return fmt.Sprintf("DataType(%d)", uint8(d))
}

// Size is the number of bytes per element in Tensor.Data; 0 for Bytes
// (whose elements are in Tensor.Elements) and for unknown datatypes.
func (d DataType) Size() int {
	if int(d) < len(dataTypeSizes) {
		return dataTypeSizes[d]
	}
	return 0
}

func (d DataType) valid() bool { return int(d) < len(dataTypeNames) }
