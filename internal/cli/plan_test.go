package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanWithoutTerminalNeedsYes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = { self }: { }; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run("deploy", "web1", "--plan", "--flake", dir)
	if code != ExitUsage || stdout != "" {
		t.Fatalf("exit %d, stdout %q, want 2 and nothing", code, stdout)
	}
	for _, want := range []string{"skiff: error: --plan asks for confirmation, but standard input is not a terminal", "skiff: hint: add --yes"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "eval") {
		t.Errorf("the flake was evaluated before refusing:\n%s", stderr)
	}
}

func TestDiffUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"diff", "--parallel", "0"},
		{"diff", "--", "web1;id"},
		{"diff", "--target-user", "root;id", "web1"},
		{"diff", "--no-such-flag"},
		{"diff", "web1", "--flake", "/nonexistent/flake"},
	} {
		code, _, stderr := run(args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, stderr)
		}
	}
}

func TestDiffAndPlanHelp(t *testing.T) {
	_, out, _ := run("diff", "--help")
	for _, want := range []string{"--json", "dry-activate", "up to date", "3    some hosts could not be checked"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff --help lacks %q", want)
		}
	}
	_, out, _ = run("deploy", "--help")
	for _, want := range []string{"--plan", "-y, --yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy --help lacks %q", want)
		}
	}
}

func TestReadYes(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " yes \n": true, "n\n": false, "\n": false, "": false, "yep\n": false} {
		var stderr bytes.Buffer
		g := &globals{stdin: strings.NewReader(in), stderr: &stderr}
		got, err := readYes(context.Background(), g)
		if err != nil || got != want {
			t.Errorf("answer %q: %v, %v; want %v", in, got, err, want)
		}
	}
	// Interrupted while waiting for an answer.
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := readYes(ctx, &globals{stdin: r, stderr: io.Discard}); err == nil {
		t.Error("an interrupted question returned no error")
	}
}
