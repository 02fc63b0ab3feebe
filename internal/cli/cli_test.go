package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"deploy", "--mode", "reboot"},
		{"deploy", "--no-such-flag"},
		{"frobnicate"},
		{"deploy", "--parallel", "0"},
		{"deploy", "--", "web1;id"},
		{"deploy", "--target-user", "root;id", "web1"},
		{"-o", "ProxyCommand=nc %h %p", "deploy", "web1"},
		{"deploy", "web1", "--flake", "/nonexistent/flake"},
	} {
		code, _, stderr := run(args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, stderr)
		}
		if !strings.HasPrefix(stderr, "skiff: error: ") || !strings.Contains(stderr, "skiff: hint: ") {
			t.Errorf("%q: stderr is not an error and a hint:\n%s", args, stderr)
		}
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	code, out, _ := run("deploy", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--mode", "--target-user", "--flake", "-x, --trace", "--ssh-config", "dry-activate", "4    a host was rolled back"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy --help lacks %q", want)
		}
	}
}

// Hosts report from goroutines of their own, alongside the trace: Main
// hands a writer that is not a file every Write whole, one at a time; a
// file (which takes each Write whole) is kept as it is, so that the live
// view still finds its terminal.
func TestOutputIsSerialized(t *testing.T) {
	var buf bytes.Buffer
	w := serialized(&buf)
	const writers, lines = 20, 200
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range lines {
				fmt.Fprintf(w, "writer %02d line %03d\n", i, j)
			}
		}()
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		if len(l) != len("writer 00 line 000") || !strings.HasPrefix(l, "writer ") {
			t.Fatalf("a mixed line: %q", l)
		}
	}
	if serialized(os.Stderr) != io.Writer(os.Stderr) {
		t.Error("os.Stderr was wrapped: the live view would not find its terminal")
	}
}
