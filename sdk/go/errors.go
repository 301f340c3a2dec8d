package kiln

import (
	"errors"
	"fmt"
)

// ErrorKind says how kiln answers a failed call (sdk/ABI.md, "Errors").
type ErrorKind uint8

const (
	// KindInvalidArgument: the client can fix it (gRPC INVALID_ARGUMENT, HTTP 400).
	KindInvalidArgument ErrorKind = 0
	// KindUnavailable: may pass, or the operator must fix it (UNAVAILABLE, HTTP 503).
	KindUnavailable ErrorKind = 1
	// KindInternal: a bug in the plugin (INTERNAL, HTTP 500, "plugin error: ...").
	KindInternal ErrorKind = 2
)

func (k ErrorKind) String() string {
	switch k {
	case KindInvalidArgument:
		return "invalid-argument"
	case KindUnavailable:
		return "unavailable"
	case KindInternal:
		return "internal"
	}
	return fmt.Sprintf("ErrorKind(%d)", uint8(k))
}

// Error is an error with a kind. Return one from the process function
// (InvalidArgument, Unavailable, Internal make them), or wrap one with
// fmt.Errorf("...: %w", err): kiln gets the kind of the first *Error in the
// chain and the whole chain's message. Any other error is internal.
type Error struct {
	Kind    ErrorKind
	Message string
}

func (e *Error) Error() string { return e.Message }

// InvalidArgument is an error the client can fix: a malformed input, an
// unsupported request parameter.
func InvalidArgument(format string, args ...any) error {
	return &Error{KindInvalidArgument, fmt.Sprintf(format, args...)}
}

// Unavailable is an error that may pass or that the operator must fix: a bad
// config parameter, a resource not ready.
func Unavailable(format string, args ...any) error {
	return &Error{KindUnavailable, fmt.Sprintf(format, args...)}
}

// Internal is a bug in the plugin.
func Internal(format string, args ...any) error {
	return &Error{KindInternal, fmt.Sprintf(format, args...)}
}

// KindOf is the kind kiln reports for err: that of the first *Error in its
// chain, else KindInternal.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
