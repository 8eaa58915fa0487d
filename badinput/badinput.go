// Package badinput marks errors caused by what the user gave: a flag, an
// argument, a spec field or a local file that does not fit. The command line
// exits 2 on them, whichever package refused, so every package marks its
// refusals with this one type.
package badinput

import (
	"errors"
	"fmt"
)

// Error is bad input. Nothing has been changed when it is returned.
type Error struct {
	// What names the input, such as "--endpoints" or "snapshot file"; empty
	// when Err already says it.
	What  string
	Value string
	Err   error
}

func (e *Error) Error() string {
	if e.What == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s %q: %v", e.What, e.Value, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// New is bad input what=value, for the reason format says.
func New(what, value, format string, args ...any) error {
	return &Error{What: what, Value: value, Err: fmt.Errorf(format, args...)}
}

// Errorf is bad input whose message names the input itself.
func Errorf(format string, args ...any) error {
	return &Error{Err: fmt.Errorf(format, args...)}
}

// Wrap marks err as bad input; nil stays nil and an error already marked is
// returned as it is.
func Wrap(err error) error {
	if err == nil || Is(err) {
		return err
	}
	return &Error{Err: err}
}

// Is reports whether err, or any error it wraps, is bad input.
func Is(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
