package kiln

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// Command protocol 1 (sdk/ABI.md, "Command protocol 1"): little-endian; a
// string is a u32 byte length + UTF-8, bytes a u64 length + bytes.

const (
	protocolVersion = 1

	callMetadata = 0
	callProcess  = 1

	statusOK    = 0
	statusError = 1

	paramBool   = 0
	paramInt64  = 1
	paramDouble = 2
	paramText   = 3
)

var (
	requestMagic  = [4]byte{'K', 'L', 'N', 'Q'}
	responseMagic = [4]byte{'K', 'L', 'N', 'R'}
)

// call is a decoded request.
type call struct {
	kind    uint8 // callMetadata or callProcess
	request Request
}

// maxData bounds one allocation for a request field: nothing larger fits in
// a 32-bit wasm memory, so a larger length can only be a corrupt request.
// (Within it, fields are allocated at the size the request announces: kiln
// writes the request, and an exact allocation is what keeps a large tensor
// from costing twice its size. The fuzz test lowers it.)
var maxData uint64 = 1 << 32

// reader decodes the request as it streams in from stdin: each field is
// read into a buffer of exactly its size (no whole-request copy, no growing
// buffers), so a request costs its own size in memory. The first error
// sticks.
type reader struct {
	in      *bufio.Reader
	off     int64
	err     error
	scratch [8]byte
}

func (r *reader) read(buf []byte, what string) bool {
	if r.err != nil {
		return false
	}
	n, err := io.ReadFull(r.in, buf)
	r.off += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		r.err = fmt.Errorf("request truncated at byte %d, inside %s (%d bytes)", r.off, what, len(buf))
	case err != nil:
		r.err = fmt.Errorf("reading the request: %w", err)
	}
	return err == nil
}

func (r *reader) take(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > maxData {
		r.err = fmt.Errorf("%s of %d bytes at byte %d: more than a wasm memory holds", what, n, r.off)
		return nil
	}
	b := make([]byte, n)
	if !r.read(b, what) {
		return nil
	}
	return b
}

func (r *reader) fixed(n int, what string) []byte {
	if !r.read(r.scratch[:n], what) {
		return nil
	}
	return r.scratch[:n]
}

func (r *reader) u8(what string) uint8 {
	if b := r.fixed(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.fixed(4, what); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.fixed(8, what); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *reader) str(what string) string {
	return string(r.take(uint64(r.u32(what+" length")), what))
}

// count reads a u32 count; capacity hints derived from it stay small, so a
// corrupt count cannot allocate much before the request runs out.
func (r *reader) count(what string) int {
	return int(r.u32(what))
}

func hint(n int) int { return min(n, 64) }

func (r *reader) tensor() Tensor {
	var t Tensor
	t.Name = r.str("tensor name")
	t.DataType = DataType(r.u8("datatype"))
	if r.err == nil && !t.DataType.valid() {
		r.err = fmt.Errorf("tensor '%s': unknown datatype %d", t.Name, uint8(t.DataType))
	}
	rank := r.count("rank")
	t.Shape = make([]int64, 0, hint(rank))
	for i := 0; i < rank && r.err == nil; i++ {
		t.Shape = append(t.Shape, int64(r.u64("dimension")))
	}
	data := r.take(r.u64("data length"), "tensor data")
	if r.err != nil {
		return t
	}
	if t.DataType != Bytes {
		t.Data = data
		return t
	}
	// KServe's raw BYTES: per element a u32 length and the bytes.
	for off := 0; off < len(data); {
		if len(data)-off < 4 {
			r.err = fmt.Errorf("tensor '%s': BYTES data ends inside an element length", t.Name)
			return t
		}
		n := uint64(binary.LittleEndian.Uint32(data[off:]))
		off += 4
		if n > uint64(len(data)-off) {
			r.err = fmt.Errorf("tensor '%s': BYTES element of %d bytes, %d left", t.Name, n, len(data)-off)
			return t
		}
		t.Elements = append(t.Elements, data[off:off+int(n):off+int(n)])
		off += int(n)
	}
	return t
}

// readRequest reads and parses a whole request, up to the end of in.
func readRequest(in io.Reader) (*call, error) {
	r := &reader{in: bufio.NewReaderSize(in, 64<<10)}
	if magic := r.fixed(4, "magic"); r.err == nil && string(magic) != string(requestMagic[:]) {
		return nil, fmt.Errorf("not a kiln command request (magic %q, expected %q)", magic, requestMagic[:])
	}
	if v := r.u32("version"); r.err == nil && v != protocolVersion {
		return nil, fmt.Errorf("unsupported command protocol version %d (this SDK speaks %d)", v, protocolVersion)
	}
	c := &call{kind: r.u8("call")}
	if r.err == nil && c.kind != callMetadata && c.kind != callProcess {
		return nil, fmt.Errorf("unknown call %d (0 = metadata, 1 = process)", c.kind)
	}
	n := r.count("config parameter count")
	c.request.Config = make(map[string]string, hint(n))
	for i := 0; i < n && r.err == nil; i++ {
		key := r.str("config parameter key")
		c.request.Config[key] = r.str("config parameter value")
	}
	n = r.count("input count")
	c.request.Inputs = make([]Tensor, 0, hint(n))
	for i := 0; i < n && r.err == nil; i++ {
		c.request.Inputs = append(c.request.Inputs, r.tensor())
	}
	n = r.count("request parameter count")
	c.request.Params = make([]Param, 0, hint(n))
	for i := 0; i < n && r.err == nil; i++ {
		p := Param{Key: r.str("request parameter key")}
		switch tag := r.u8("request parameter tag"); tag {
		case paramBool:
			p.Value = r.u8("bool parameter") != 0
		case paramInt64:
			p.Value = int64(r.u64("int64 parameter"))
		case paramDouble:
			p.Value = math.Float64frombits(r.u64("double parameter"))
		case paramText:
			p.Value = r.str("text parameter")
		default:
			if r.err == nil {
				r.err = fmt.Errorf("request parameter '%s': unknown tag %d", p.Key, tag)
			}
		}
		c.request.Params = append(c.request.Params, p)
	}
	if r.err != nil {
		return nil, r.err
	}
	switch _, err := r.in.ReadByte(); err {
	case io.EOF:
		return c, nil
	case nil:
		return nil, fmt.Errorf("data after the end of the request (at byte %d)", r.off)
	default:
		return nil, fmt.Errorf("reading the request: %w", err)
	}
}

// decodeRequest parses a request held in memory.
func decodeRequest(buf []byte) (*call, error) {
	return readRequest(bytes.NewReader(buf))
}

// writer encodes the response; the first error sticks.
type writer struct {
	w       *bufio.Writer
	scratch [8]byte
}

func (w *writer) raw(b []byte) { w.w.Write(b) }
func (w *writer) u8(v uint8)   { w.w.WriteByte(v) }
func (w *writer) u32(v uint32) {
	binary.LittleEndian.PutUint32(w.scratch[:4], v)
	w.w.Write(w.scratch[:4])
}
func (w *writer) u64(v uint64) {
	binary.LittleEndian.PutUint64(w.scratch[:8], v)
	w.w.Write(w.scratch[:8])
}
func (w *writer) str(s string) {
	w.u32(uint32(len(s)))
	w.w.WriteString(s)
}
func (w *writer) dims(d []int64) {
	w.u32(uint32(len(d)))
	for _, v := range d {
		w.u64(uint64(v))
	}
}

func (w *writer) header(status uint8) {
	w.raw(responseMagic[:])
	w.u32(protocolVersion)
	w.u8(status)
}

// checkString: the host requires UTF-8 names and strings that fit a u32.
func checkString(s, what string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	if uint64(len(s)) > math.MaxUint32 {
		return fmt.Errorf("%s is longer than 4 GiB", what)
	}
	return nil
}

// checkMetadata reports what would make the metadata response malformed.
func checkMetadata(m *Metadata) error {
	for _, s := range []string{m.Name, m.Version} {
		if err := checkString(s, "metadata name/version"); err != nil {
			return err
		}
	}
	for _, list := range [][]Spec{m.Inputs, m.Outputs} {
		for _, s := range list {
			if err := checkString(s.Name, "tensor spec name"); err != nil {
				return err
			}
			if !s.DataType.valid() {
				return fmt.Errorf("tensor spec '%s' has an unknown datatype %d", s.Name, uint8(s.DataType))
			}
		}
	}
	return nil
}

func writeMetadata(out io.Writer, m *Metadata) error {
	w := &writer{w: bufio.NewWriter(out)}
	w.header(statusOK)
	w.str(m.Name)
	w.str(m.Version)
	for _, list := range [][]Spec{m.Inputs, m.Outputs} {
		w.u32(uint32(len(list)))
		for _, s := range list {
			w.str(s.Name)
			w.u8(uint8(s.DataType))
			w.dims(s.Dims)
		}
	}
	return w.w.Flush()
}

// checkOutputs reports (as internal: a plugin bug) the first output that
// does not satisfy the tensor rules, before anything is written.
func checkOutputs(outputs []Tensor) error {
	for i := range outputs {
		t := &outputs[i]
		if err := checkString(t.Name, "output name"); err != nil {
			return Internal("%v", err)
		}
		if err := t.Check(); err != nil {
			return Internal("output %v", err)
		}
		if t.DataType == Bytes {
			for _, e := range t.Elements {
				if uint64(len(e)) > math.MaxUint32 {
					return Internal("output '%s': a BYTES element is longer than 4 GiB", t.Name)
				}
			}
		}
	}
	return nil
}

func writeOutputs(out io.Writer, outputs []Tensor) error {
	w := &writer{w: bufio.NewWriterSize(out, 64<<10)}
	w.header(statusOK)
	w.u32(uint32(len(outputs)))
	for i := range outputs {
		t := &outputs[i]
		w.str(t.Name)
		w.u8(uint8(t.DataType))
		w.dims(t.Shape)
		if t.DataType != Bytes {
			w.u64(uint64(len(t.Data)))
			w.raw(t.Data)
			continue
		}
		size := uint64(0)
		for _, e := range t.Elements {
			size += 4 + uint64(len(e))
		}
		w.u64(size)
		for _, e := range t.Elements {
			w.u32(uint32(len(e)))
			w.raw(e)
		}
	}
	return w.w.Flush()
}

func writeError(out io.Writer, err error) error {
	msg := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(msg) > 1<<20 {
		msg = strings.ToValidUTF8(msg[:1<<20], "") + "..."
	}
	w := &writer{w: bufio.NewWriter(out)}
	w.header(statusError)
	w.u8(uint8(KindOf(err)))
	w.str(msg)
	return w.w.Flush()
}
