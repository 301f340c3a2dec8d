// Package kiln writes kiln plugins in Go.
//
// Go 1.23 compiles only WASI command modules (GOOS=wasip1 GOARCH=wasm
// exports _start and nothing else), so a Go plugin speaks kiln's "Command
// protocol 1" (sdk/ABI.md): kiln starts a fresh instance for every call,
// writes the call to stdin, runs the program and reads the answer from
// stdout. Serve does all of that; a plugin's main is one call to it:
//
//	package main
//
//	import kiln "kiln.dev/plugin"
//
//	func main() {
//		kiln.Serve(kiln.Metadata{
//			Name: "double", Version: "1.0.0",
//			Inputs:  []kiln.Spec{{Name: "INPUT", DataType: kiln.FP32, Dims: []int64{-1}}},
//			Outputs: []kiln.Spec{{Name: "OUTPUT", DataType: kiln.FP32, Dims: []int64{-1}}},
//		}, func(r *kiln.Request) ([]kiln.Tensor, error) {
//			in, err := r.RequiredInput("INPUT")
//			if err != nil {
//				return nil, err
//			}
//			x, err := in.Float32s()
//			if err != nil {
//				return nil, err
//			}
//			for i := range x {
//				x[i] *= 2
//			}
//			return []kiln.Tensor{kiln.NewFloat32("OUTPUT", in.Shape, x)}, nil
//		})
//	}
//
// Build it with GOOS=wasip1 GOARCH=wasm go build -o model.wasm .
//
// stdout carries the response and nothing else: Serve points os.Stdout at
// stderr while it runs, so fmt.Print* ends up in kiln's log instead of
// corrupting the answer, but write log lines with Log or Logf (or the
// standard log package, which writes to stderr).
//
// The package uses only the standard library.
package kiln
