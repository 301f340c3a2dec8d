package kiln

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The host's side of the protocol, written independently of codec.go.

type enc struct{ bytes.Buffer }

func (e *enc) u8(v uint8)   { e.WriteByte(v) }
func (e *enc) u32(v uint32) { binary.Write(e, binary.LittleEndian, v) }
func (e *enc) u64(v uint64) { binary.Write(e, binary.LittleEndian, v) }
func (e *enc) str(s string) { e.u32(uint32(len(s))); e.WriteString(s) }

func (e *enc) tensor(t Tensor) {
	e.str(t.Name)
	e.u8(uint8(t.DataType))
	e.u32(uint32(len(t.Shape)))
	for _, d := range t.Shape {
		e.u64(uint64(d))
	}
	data := t.Data
	if t.DataType == Bytes {
		var b bytes.Buffer
		for _, el := range t.Elements {
			binary.Write(&b, binary.LittleEndian, uint32(len(el)))
			b.Write(el)
		}
		data = b.Bytes()
	}
	e.u64(uint64(len(data)))
	e.Write(data)
}

// request encodes a call; config is a list of key/value pairs (in order).
func request(call uint8, config [][2]string, inputs []Tensor, params []Param) []byte {
	var e enc
	e.WriteString("KLNQ")
	e.u32(1)
	e.u8(call)
	e.u32(uint32(len(config)))
	for _, kv := range config {
		e.str(kv[0])
		e.str(kv[1])
	}
	e.u32(uint32(len(inputs)))
	for _, t := range inputs {
		e.tensor(t)
	}
	e.u32(uint32(len(params)))
	for _, p := range params {
		e.str(p.Key)
		switch v := p.Value.(type) {
		case bool:
			e.u8(0)
			if v {
				e.u8(1)
			} else {
				e.u8(0)
			}
		case int64:
			e.u8(1)
			e.u64(uint64(v))
		case float64:
			e.u8(2)
			e.u64(math.Float64bits(v))
		case string:
			e.u8(3)
			e.str(v)
		}
	}
	return e.Bytes()
}

type dec struct {
	t *testing.T
	b []byte
}

func (d *dec) take(n int) []byte {
	d.t.Helper()
	if n > len(d.b) {
		d.t.Fatalf("response truncated: need %d bytes, have %d", n, len(d.b))
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}
func (d *dec) u8() uint8   { return d.take(1)[0] }
func (d *dec) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *dec) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
func (d *dec) str() string { return string(d.take(int(d.u32()))) }
func (d *dec) dims() []int64 {
	out := make([]int64, d.u32())
	for i := range out {
		out[i] = int64(d.u64())
	}
	return out
}

type response struct {
	ok      bool
	meta    Metadata
	outputs []Tensor
	kind    ErrorKind
	message string
}

func decodeResponse(t *testing.T, b []byte, call uint8) response {
	t.Helper()
	d := &dec{t, b}
	if m := string(d.take(4)); m != "KLNR" {
		t.Fatalf("magic %q", m)
	}
	if v := d.u32(); v != 1 {
		t.Fatalf("version %d", v)
	}
	var r response
	switch s := d.u8(); s {
	case 0:
		r.ok = true
		if call == 0 {
			r.meta.Name, r.meta.Version = d.str(), d.str()
			for _, list := range []*[]Spec{&r.meta.Inputs, &r.meta.Outputs} {
				for n := d.u32(); n > 0; n-- {
					*list = append(*list, Spec{Name: d.str(), DataType: DataType(d.u8()), Dims: d.dims()})
				}
			}
		} else {
			for n := d.u32(); n > 0; n-- {
				o := Tensor{Name: d.str(), DataType: DataType(d.u8()), Shape: d.dims()}
				data := d.take(int(d.u64()))
				if o.DataType == Bytes {
					for len(data) > 0 {
						k := binary.LittleEndian.Uint32(data)
						o.Elements = append(o.Elements, data[4:4+k])
						data = data[4+k:]
					}
				} else {
					o.Data = data
				}
				r.outputs = append(r.outputs, o)
			}
		}
	case 1:
		r.kind, r.message = ErrorKind(d.u8()), d.str()
	default:
		t.Fatalf("status %d", s)
	}
	if len(d.b) != 0 {
		t.Fatalf("%d bytes after the response", len(d.b))
	}
	return r
}

var testMeta = Metadata{
	Name: "test", Version: "1.2.3",
	Inputs: []Spec{
		{Name: "X", DataType: FP32, Dims: []int64{-1, 3}},
		{Name: "S", DataType: Bytes, Dims: []int64{-1}},
	},
	Outputs: []Spec{{Name: "Y", DataType: Int64, Dims: nil}},
}

func run(t *testing.T, req []byte, process ProcessFunc) response {
	t.Helper()
	var out bytes.Buffer
	if err := serve(bytes.NewReader(req), &out, &testMeta, process); err != nil {
		t.Fatalf("serve: %v", err)
	}
	return decodeResponse(t, out.Bytes(), req[8])
}

func notCalled(*Request) ([]Tensor, error) { panic("process called") }

func TestMetadata(t *testing.T) {
	r := run(t, request(0, [][2]string{{"a", "b"}}, nil, nil), notCalled)
	want := testMeta
	want.Outputs = []Spec{{Name: "Y", DataType: Int64, Dims: []int64{}}}
	if !r.ok || !reflect.DeepEqual(r.meta, want) {
		t.Fatalf("got %+v", r)
	}
}

func TestProcessRoundTrip(t *testing.T) {
	x := NewFloat32("X", []int64{2, 3}, []float32{1, -2, 3.5, float32(math.Inf(1)), 0, -0})
	s := NewBytes("S", []int64{3}, [][]byte{[]byte("hello"), {}, {0xff, 0, 1}})
	empty := NewFloat32("E", []int64{0, 4}, nil)
	params := []Param{{"flag", true}, {"off", false}, {"n", int64(-7)}, {"f", 0.25}, {"text", "héllo"}}
	config := [][2]string{{"mean", "1.5"}, {"std", ""}}
	r := run(t, request(1, config, []Tensor{x, s, empty}, params), func(r *Request) ([]Tensor, error) {
		if !reflect.DeepEqual(r.Config, map[string]string{"mean": "1.5", "std": ""}) {
			t.Errorf("config %v", r.Config)
		}
		if !reflect.DeepEqual(r.Params, params) {
			t.Errorf("params %#v", r.Params)
		}
		if v, ok := r.Param("n"); !ok || v != int64(-7) {
			t.Errorf("Param(n) = %v, %v", v, ok)
		}
		if len(r.Inputs) != 3 || r.Inputs[0].Name != "X" || r.Inputs[1].Name != "S" || r.Inputs[2].Name != "E" {
			t.Fatalf("inputs %+v", r.Inputs)
		}
		in, _ := r.Input("X")
		if !reflect.DeepEqual(in.Shape, []int64{2, 3}) || !bytes.Equal(in.Data, x.Data) || in.Elements != nil {
			t.Errorf("X = %+v", in)
		}
		strs, err := r.Inputs[1].Strings()
		if err != nil || !reflect.DeepEqual(strs, []string{"hello", "", "\xff\x00\x01"}) {
			t.Errorf("S = %q, %v", strs, err)
		}
		if e, _ := r.Input("E"); len(e.Data) != 0 || !reflect.DeepEqual(e.Shape, []int64{0, 4}) {
			t.Errorf("E = %+v", e)
		}
		// In place: the output reuses the input's buffer.
		in.Name = "X2"
		in.Data[0] = 0
		return []Tensor{
			NewInt64("Y", nil, []int64{42}),
			*in,
			NewStrings("T", []int64{1, 2}, []string{"", "ab"}),
			NewStrings("U", []int64{0}, nil),
		}, nil
	})
	if !r.ok || len(r.outputs) != 4 {
		t.Fatalf("got %+v", r)
	}
	if y, err := r.outputs[0].Int64s(); err != nil || !reflect.DeepEqual(y, []int64{42}) || len(r.outputs[0].Shape) != 0 {
		t.Errorf("Y = %v %v %v", y, err, r.outputs[0].Shape)
	}
	want := append([]byte{0}, x.Data[1:]...)
	if o := r.outputs[1]; o.Name != "X2" || o.DataType != FP32 || !bytes.Equal(o.Data, want) {
		t.Errorf("X2 = %+v", o)
	}
	if o := r.outputs[2]; o.DataType != Bytes || !reflect.DeepEqual(o.Shape, []int64{1, 2}) ||
		len(o.Elements) != 2 || len(o.Elements[0]) != 0 || string(o.Elements[1]) != "ab" {
		t.Errorf("T = %+v", o)
	}
	if o := r.outputs[3]; o.DataType != Bytes || len(o.Elements) != 0 {
		t.Errorf("U = %+v", o)
	}
}

func TestErrors(t *testing.T) {
	req := request(1, nil, nil, nil)
	cases := []struct {
		err     error
		kind    ErrorKind
		message string
	}{
		{InvalidArgument("bad '%s'", "x"), KindInvalidArgument, "bad 'x'"},
		{Unavailable("later"), KindUnavailable, "later"},
		{Internal("bug %d", 1), KindInternal, "bug 1"},
		{errors.New("plain"), KindInternal, "plain"},
		{fmt.Errorf("context: %w", Unavailable("inner")), KindUnavailable, "context: inner"},
		{InvalidArgument("bad \xff byte"), KindInvalidArgument, "bad \uFFFD byte"},
	}
	for _, c := range cases {
		r := run(t, req, func(*Request) ([]Tensor, error) { return nil, c.err })
		if r.ok || r.kind != c.kind || r.message != c.message {
			t.Errorf("%v: got ok=%v kind=%v %q", c.err, r.ok, r.kind, r.message)
		}
	}
}

func TestPanicIsInternal(t *testing.T) {
	var log bytes.Buffer
	logOutput = &log
	defer func() { logOutput = os.Stderr }()
	r := run(t, request(1, nil, nil, nil), func(*Request) ([]Tensor, error) {
		var s []int
		_ = s[3]
		return nil, nil
	})
	if r.ok || r.kind != KindInternal || !strings.HasPrefix(r.message, "panic: runtime error: index out of range") {
		t.Fatalf("got %+v", r)
	}
	if !strings.HasPrefix(log.String(), "panic: runtime error: index out of range") || !strings.Contains(log.String(), "TestPanicIsInternal") {
		t.Errorf("log: %s", log.String())
	}
}

func TestBadOutputIsInternalNamingIt(t *testing.T) {
	cases := map[string]Tensor{
		"output tensor 'O': shape [4] of FP32 needs 16 bytes, data has 8":   {Name: "O", DataType: FP32, Shape: []int64{4}, Data: make([]byte, 8)},
		"output tensor 'O': shape [2] needs 2 BYTES elements, it has 1":     NewStrings("O", []int64{2}, []string{"a"}),
		"output tensor 'O' is BYTES but has raw data (BYTES uses Elements)": {Name: "O", DataType: Bytes, Data: []byte{1}},
		"output tensor 'O' has an unknown datatype 14":                      {Name: "O", DataType: 14},
		"output tensor 'O': shape [-1] has a negative dimension":            {Name: "O", DataType: FP32, Shape: []int64{-1}},
	}
	for want, o := range cases {
		r := run(t, request(1, nil, nil, nil), func(*Request) ([]Tensor, error) { return []Tensor{o}, nil })
		if r.ok || r.kind != KindInternal || r.message != want {
			t.Errorf("got %+v, want %q", r, want)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	good := request(1, [][2]string{{"k", "v"}},
		[]Tensor{NewFloat32("X", []int64{1, 3}, []float32{1, 2, 3}), NewStrings("S", []int64{2}, []string{"ab", "c"})},
		[]Param{{"p", "q"}, {"b", true}})
	if _, err := decodeRequest(good); err != nil {
		t.Fatal(err)
	}
	// Every strict prefix is truncated: an error, never a panic.
	for n := 0; n < len(good); n++ {
		if _, err := decodeRequest(good[:n]); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("prefix of %d bytes: %v", n, err)
		}
	}
	patch := func(off int, b ...byte) []byte {
		c := bytes.Clone(good)
		copy(c[off:], b)
		return c
	}
	cases := map[string][]byte{
		`not a kiln command request (magic "KLNR", expected "KLNQ")`:             patch(0, 'K', 'L', 'N', 'R'),
		"unsupported command protocol version 2 (this SDK speaks 1)":             patch(4, 2),
		"unknown call 2 (0 = metadata, 1 = process)":                             patch(8, 2),
		"tensor 'X': unknown datatype 14":                                        patch(9+4+4+1+4+1+4+4+1, 14),
		fmt.Sprintf("data after the end of the request (at byte %d)", len(good)): append(bytes.Clone(good), 0),
		// A corrupt count reads on until the request runs out.
		fmt.Sprintf("request truncated at byte %d, inside config parameter value (173539328 bytes)", len(good)): patch(9, 0xff, 0xff, 0xff, 0xff),
	}
	for want, req := range cases {
		if _, err := decodeRequest(req); err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	// A length no wasm memory holds is refused before allocating.
	var big enc
	big.Write(good[:9])
	big.u32(0)
	big.u32(1)
	big.str("X")
	big.u8(uint8(FP32))
	big.u32(0)
	big.u64(1 << 40)
	if _, err := decodeRequest(big.Bytes()); err == nil || err.Error() != "tensor data of 1099511627776 bytes at byte 35: more than a wasm memory holds" {
		t.Errorf("got %v", err)
	}
	// A BYTES element whose length runs past the data (framed by hand).
	var e enc
	e.Write(good[:9])
	e.u32(0)
	e.u32(1)
	e.str("S")
	e.u8(uint8(Bytes))
	e.u32(1)
	e.u64(1)
	e.u64(5)
	e.Write([]byte{9, 0, 0, 0, 'x'})
	e.u32(0)
	if _, err := decodeRequest(e.Bytes()); err == nil || err.Error() != "tensor 'S': BYTES element of 9 bytes, 1 left" {
		t.Errorf("got %v", err)
	}
	// Unknown parameter tag.
	var p enc
	p.Write(good[:9])
	p.u32(0)
	p.u32(0)
	p.u32(1)
	p.str("k")
	p.u8(4)
	if _, err := decodeRequest(p.Bytes()); err == nil || err.Error() != "request parameter 'k': unknown tag 4" {
		t.Errorf("got %v", err)
	}
}

func TestServeReportsMalformedRequests(t *testing.T) {
	var out bytes.Buffer
	err := serve(strings.NewReader("KLNQ\x01\x00\x00\x00\x07"), &out, &testMeta, notCalled)
	if err == nil || out.Len() != 0 {
		t.Fatalf("err %v, wrote %d bytes", err, out.Len())
	}
	bad := testMeta
	bad.Inputs = []Spec{{Name: "X", DataType: 99}}
	if err := serve(bytes.NewReader(request(0, nil, nil, nil)), &out, &bad, notCalled); err == nil || out.Len() != 0 {
		t.Fatalf("bad metadata: err %v, wrote %d bytes", err, out.Len())
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(request(0, nil, nil, nil))
	f.Add(request(1, [][2]string{{"a", "b"}}, []Tensor{NewStrings("S", []int64{2}, []string{"x", ""})},
		[]Param{{"d", 1.5}}))
	maxData = 1 << 20 // natively, a 4 GiB allocation per corrupt length is too slow
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeRequest(b) // must not panic
	})
}

// The request of ABI.md's framing, byte by byte as kiln frames it (the same
// vector as the host's wire.rs test): config {k: v}, FP32 "IN" [1, 2] =
// {1, 2}, request parameter p = int64 -2.
func TestSpecVector(t *testing.T) {
	req := []byte("KLNQ\x01\x00\x00\x00\x01" +
		"\x01\x00\x00\x00\x01\x00\x00\x00k\x01\x00\x00\x00v" +
		"\x01\x00\x00\x00\x02\x00\x00\x00IN\x0a\x02\x00\x00\x00" +
		"\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00" +
		"\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x40" +
		"\x01\x00\x00\x00\x01\x00\x00\x00p\x01\xfe\xff\xff\xff\xff\xff\xff\xff")
	c, err := decodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := c.request.Input("IN")
	x, err := in.Float32s()
	if c.kind != callProcess || c.request.Config["k"] != "v" || err != nil || !reflect.DeepEqual(x, []float32{1, 2}) ||
		!reflect.DeepEqual(in.Shape, []int64{1, 2}) || !reflect.DeepEqual(c.request.Params, []Param{{"p", int64(-2)}}) {
		t.Fatalf("%+v %v", c, err)
	}
	var out bytes.Buffer
	if err := writeError(&out, InvalidArgument("bad INPUT")); err != nil {
		t.Fatal(err)
	}
	if want := "KLNR\x01\x00\x00\x00\x01\x00\x09\x00\x00\x00bad INPUT"; out.String() != want {
		t.Fatalf("%q", out.String())
	}
}
