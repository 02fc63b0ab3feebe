package cli

import (
	"bytes"
	"context"
	"strings"
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
