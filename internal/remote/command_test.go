package remote

import (
	"bytes"
	"testing"
)

func TestExitMarkerIsTakenOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string // the command's standard error, as it arrives
		code   int
		seen   bool
		want   string
	}{
		{"none", []string{"a\n", "b"}, 0, false, "a\nb"},
		{"alone", []string{"err\n", "NONCE 255\n"}, 255, true, "err\n"},
		{"after a line without newline", []string{"par", "tial", "NONCE 3\n"}, 3, true, "partial"},
		{"split", []string{"x\nNON", "CE 0", "\n"}, 0, true, "x\n"},
		{"look-alike", []string{"NONCEX 2\n", "NONCE 1\n"}, 1, true, "NONCEX 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			m := &exitMarker{nonce: "NONCE", w: &got}
			var all []byte
			for _, w := range tc.writes {
				m.Write([]byte(w))
				all = append(all, w...)
			}
			m.flush()
			if got.String() != tc.want || m.seen != tc.seen || m.code != tc.code {
				t.Errorf("got %q seen %v code %d; want %q %v %d", got.String(), m.seen, m.code, tc.want, tc.seen, tc.code)
			}
			if s := string(m.strip(all)); s != tc.want {
				t.Errorf("strip: %q, want %q", s, tc.want)
			}
		})
	}
}
