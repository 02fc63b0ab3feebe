// Package lines cuts a stream written in pieces (a command's output, as it
// comes) into whole lines, the one place skiff does so.
package lines

import (
	"bytes"
	"sync"
)

// Writer passes each whole line written to it to Line, newline included;
// Flush passes on a last line that lacks one. Line's argument is valid only
// during the call. A Writer is safe for concurrent use: lines are passed
// on one at a time, in order.
type Writer struct {
	Line func(line []byte)
	mu   sync.Mutex
	buf  []byte
}

// New returns a Writer that passes each line to line.
func New(line func(line []byte)) *Writer { return &Writer{Line: line} }

// Write implements io.Writer; it never fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(w.buf[start:], '\n')
		if i < 0 {
			break
		}
		w.Line(w.buf[start : start+i+1])
		start += i + 1
	}
	w.buf = append(w.buf[:0], w.buf[start:]...)
	return len(p), nil
}

// Flush passes on what is left: a last line without its newline.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.Line(w.buf)
		w.buf = w.buf[:0]
	}
}

// Trim is line without its newline.
func Trim(line []byte) []byte { return bytes.TrimSuffix(line, []byte("\n")) }
