package kiln

import "strings"

// Spec declares an input or output in Metadata; Dims use -1 for a variable
// dimension and exclude the batch dimension, as in config.pbtxt.
type Spec struct {
	Name     string
	DataType DataType
	Dims     []int64
}

// Metadata is what the plugin declares. kiln compares it with config.pbtxt at
// load: every tensor the config declares must be here with the same datatype.
// Name and Version are the plugin's own (kiln's load errors quote Name).
type Metadata struct {
	Name    string
	Version string
	Inputs  []Spec
	Outputs []Spec
}

// Param is one of the request's KServe parameters. Value is a bool, an
// int64, a float64 or a string.
type Param struct {
	Key   string
	Value any
}

// Request is one process call.
type Request struct {
	// Inputs are the request's tensors, in request order, already checked
	// by kiln against config.pbtxt (names, datatypes, shapes, sizes).
	Inputs []Tensor
	// Params are the request's KServe parameters (from the client).
	Params []Param
	// Config holds the model's config.pbtxt parameters (string values),
	// kiln's own wasm_* ones included; fixed for a model version.
	Config map[string]string
}

// Input returns the input named name.
func (r *Request) Input(name string) (*Tensor, bool) {
	for i := range r.Inputs {
		if r.Inputs[i].Name == name {
			return &r.Inputs[i], true
		}
	}
	return nil, false
}

// RequiredInput returns the input named name, or an invalid-argument error
// "missing input tensor 'NAME' (the request has: A, B)".
func (r *Request) RequiredInput(name string) (*Tensor, error) {
	if t, ok := r.Input(name); ok {
		return t, nil
	}
	have := make([]string, len(r.Inputs))
	for i, t := range r.Inputs {
		have[i] = t.Name
	}
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return nil, InvalidArgument("missing input tensor '%s' (the request has: %s)", name, list)
}

// Param returns the value of the request parameter key (bool, int64,
// float64 or string).
func (r *Request) Param(key string) (any, bool) {
	for _, p := range r.Params {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}
