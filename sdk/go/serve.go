package kiln

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// ProcessFunc handles one process call: it returns every output the model's
// config.pbtxt declares, or an error (see Error for the kinds).
type ProcessFunc func(*Request) ([]Tensor, error)

// Serve answers the call kiln wrote to stdin and returns; it is the whole of
// a plugin's main (return from main after it: kiln requires exit status 0).
//
// For a metadata call it writes meta. For a process call it calls process
// and writes its outputs, or its error: the kind of an *Error in the chain
// (see KindOf), internal for any other error and for a panic (logged with
// its stack). Outputs are checked first (Tensor.Check); a bad one fails the
// call as internal, naming it.
//
// A request that is not Command protocol 1 (wrong magic, version or call,
// truncated), or a metadata value that cannot be encoded, is reported on
// stderr and ends the program with status 1; kiln fails the call (or the
// load) with that line.
//
// While Serve runs, os.Stdout is os.Stderr: stray fmt.Print* calls end up
// in kiln's log rather than in the response. (It stays so after Serve
// returns.)
func Serve(meta Metadata, process ProcessFunc) {
	out := os.Stdout
	os.Stdout = os.Stderr
	if err := serve(os.Stdin, out, &meta, process); err != nil {
		Logf("kiln plugin: %v", err)
		os.Exit(1)
	}
}

func serve(in io.Reader, out io.Writer, meta *Metadata, process ProcessFunc) error {
	c, err := readRequest(in)
	if err != nil {
		return err
	}
	if c.kind == callMetadata {
		if err := checkMetadata(meta); err != nil {
			return err
		}
		return writeMetadata(out, meta)
	}
	outputs, err := runProcess(process, &c.request)
	if err == nil {
		err = checkOutputs(outputs)
	}
	if err != nil {
		return writeError(out, err)
	}
	return writeOutputs(out, outputs)
}

func runProcess(process ProcessFunc, r *Request) (outputs []Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			Logf("panic: %v\n%s", p, debug.Stack())
			outputs, err = nil, Internal("panic: %v", p)
		}
	}()
	return process(r)
}

// Log writes a line to stderr, which kiln logs (target kiln::plugin, level
// info, one event per line, at most the model's wasm_log_bytes per call,
// 64 KiB by default; kiln drops the rest). Arguments are formatted as by
// fmt.Sprint.
func Log(args ...any) { logLine(fmt.Sprint(args...)) }

// Logf is Log with a format, as fmt.Sprintf.
func Logf(format string, args ...any) { logLine(fmt.Sprintf(format, args...)) }

// logOutput is where Log writes (tests capture it).
var logOutput io.Writer = os.Stderr

func logLine(s string) {
	io.WriteString(logOutput, strings.TrimRight(s, "\n")+"\n")
}
