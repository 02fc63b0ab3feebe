package fault

import (
	"errors"
	"fmt"
)

// Class names the layer that failed.
type Class string

// The layers, from the network up.
const (
	DNS        Class = "dns"         // the name does not resolve
	Refused    Class = "refused"     // TCP connection refused: sshd down or wrong port
	Timeout    Class = "timeout"     // TCP or SSH timed out: host down, firewall
	Unreach    Class = "unreachable" // no route to host, network unreachable
	HostKey    Class = "hostkey"     // host key unknown or changed
	Auth       Class = "auth"        // authentication refused
	SSH        Class = "ssh"         // any other ssh failure
	Sudo       Class = "sudo"        // sudo refused or wants a password
	Nix        Class = "nix"         // nix missing or failing on the host
	Disk       Class = "disk"        // not enough space
	Eval       Class = "eval"        // the flake does not evaluate
	Build      Class = "build"       // a derivation failed to build
	Copy       Class = "copy"        // copying the closure failed
	Activation Class = "activation"  // switch-to-configuration failed
	Units      Class = "units"       // activation succeeded but units failed
	Usage      Class = "usage"       // bad input, refused before touching hosts
	// Interrupted is not a failure of the host: the run was stopped
	// (Ctrl-C) before the host's deploy could finish.
	Interrupted Class = "interrupted"
)

// Error is a classified failure.
type Error struct {
	Host  string // empty when no host is involved
	Class Class
	Msg   string
	Hint  string
	Err   error
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Host != "" {
		msg = e.Host + ": " + msg
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a classified error.
func New(host string, class Class, hint, format string, args ...any) *Error {
	return &Error{Host: host, Class: class, Hint: hint, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err, keeping it as the cause.
func Wrap(err error, host string, class Class, hint, format string, args ...any) *Error {
	e := New(host, class, hint, format, args...)
	e.Err = err
	return e
}

// As returns the classified error inside err, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ClassOf returns err's class, or "" when it has none.
func ClassOf(err error) Class {
	if e, ok := As(err); ok {
		return e.Class
	}
	return ""
}
