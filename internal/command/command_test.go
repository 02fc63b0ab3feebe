package command

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestJoinRoundTripsThroughShell(t *testing.T) {
	args := []string{"plain", "with space", "it's", `"dq"`, "$HOME", "`id`", "a;b", "", "new\nline", "*", "--opt=x"}
	// Parse the joined line back through a real shell.
	got, err := exec.Command("sh", "-c", `f() { for a in "$@"; do printf '[%s]' "$a"; done; }; f `+Join(args)).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]")
	}
	if string(got) != want.String() {
		t.Errorf("shell parsed %q, want %q", got, want.String())
	}
}

func TestQuoteLeavesSafeWordsBare(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/abc-x": "/nix/store/abc-x",
		"a b":              "'a b'",
		"":                 "''",
		"it's":             `'it'\''s'`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunTracesAndReportsFailure(t *testing.T) {
	var trace bytes.Buffer
	r := &Runner{Trace: &trace}
	_, err := r.Run(context.Background(), Cmd{Argv: []string{"sh", "-c", "echo oops >&2; exit 3"}, Env: []string{"A=b c"}})
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode != 3 || !strings.Contains(ce.Stderr, "oops") {
		t.Fatalf("err = %#v", err)
	}
	if got, want := trace.String(), "+ A='b c' sh -c 'echo oops >&2; exit 3'\n"; got != want {
		t.Errorf("trace = %q, want %q", got, want)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\n\nb\nc\n\n", 2); got != "b\nc" {
		t.Errorf("Tail = %q", got)
	}
}

// A program runs in a process group of its own, so that a Ctrl-C typed on
// the terminal (sent to skiff's whole group) reaches skiff alone; a
// Terminal program stays in skiff's group.
func TestProgramsGetTheirOwnProcessGroup(t *testing.T) {
	own := syscall.Getpgrp()
	for _, terminal := range []bool{false, true} {
		res, err := (&Runner{}).Run(context.Background(), Cmd{Argv: []string{"sh", "-c", "ps -o pgid= -p $$"}, Terminal: terminal})
		if err != nil {
			t.Fatal(err)
		}
		pgid, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
		if err != nil {
			t.Fatalf("ps printed %q", res.Stdout)
		}
		if (pgid == own) != terminal {
			t.Errorf("terminal=%v: child's process group %d, skiff's %d", terminal, pgid, own)
		}
	}
}
