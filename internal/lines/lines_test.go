package lines

import (
	"reflect"
	"testing"
)

func TestWriterPassesWholeLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"none", nil, nil},
		{"one piece", []string{"a\nb\n"}, []string{"a\n", "b\n"}},
		{"split", []string{"a", "b\nc", "\n\n", "last"}, []string{"ab\n", "c\n", "\n", "last"}},
		{"no newline", []string{"x", "y"}, []string{"xy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			w := New(func(l []byte) { got = append(got, string(l)) })
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			w.Flush()
			w.Flush()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTrim(t *testing.T) {
	if got := string(Trim([]byte("a\n"))); got != "a" {
		t.Errorf("%q", got)
	}
	if got := string(Trim([]byte("a"))); got != "a" {
		t.Errorf("%q", got)
	}
}
