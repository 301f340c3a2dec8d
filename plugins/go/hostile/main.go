// hostile: a Go command plugin that misbehaves on purpose, for kiln's
// sandbox tests (tests/test_plugins.py). The config parameter `behaviour`
// picks how; each must fail only its own request, with an error that says
// what happened, and leave the server and the other models serving.
//
//	exit     os.Exit(3) without answering
//	loop     spins forever (the deadline, wasm_timeout_ms, stops it)
//	memory   allocates until the memory cap (wasm_memory_mb) stops it
//	garbage  writes bytes that are not an answer straight to stdout (fd 1)
//	panic    panics inside process (the SDK answers internal)
//	(other)  answers OUTPUT = INPUT, like a well-behaved plugin
package main

import (
	"os"

	kiln "kiln.dev/plugin"
)

var metadata = kiln.Metadata{
	Name:    "hostile-go",
	Version: "1.0.0",
	Inputs:  []kiln.Spec{{Name: "INPUT", DataType: kiln.FP32, Dims: []int64{-1}}},
	Outputs: []kiln.Spec{{Name: "OUTPUT", DataType: kiln.FP32, Dims: []int64{-1}}},
}

var sink [][]byte

func process(r *kiln.Request) ([]kiln.Tensor, error) {
	switch r.Config["behaviour"] {
	case "exit":
		os.Stderr.WriteString("hostile: exiting with status 3\n")
		os.Exit(3)
	case "loop":
		for n := 0; ; n++ {
			if n < 0 {
				break
			}
		}
	case "memory":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "garbage":
		os.NewFile(1, "stdout").Write([]byte("this is not an answer\n"))
		os.Exit(0)
	case "panic":
		panic("hostile: panicking on purpose")
	}
	in, err := r.RequiredInput("INPUT")
	if err != nil {
		return nil, err
	}
	x, err := in.Float32s()
	if err != nil {
		return nil, err
	}
	return []kiln.Tensor{kiln.NewFloat32("OUTPUT", in.Shape, x)}, nil
}

func main() {
	kiln.Serve(metadata, process)
}
