package command

import (
	"bytes"
	"context"
	"testing"
)

func TestStreamStderrSeparatesTheStreams(t *testing.T) {
	var out, errs bytes.Buffer
	res, err := (&Runner{}).Run(context.Background(), Cmd{
		Argv:   []string{"sh", "-c", "echo out; echo err >&2"},
		Stream: &out, StreamStderr: &errs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "out\n" || errs.String() != "err\n" {
		t.Errorf("streamed stdout %q, stderr %q", out.String(), errs.String())
	}
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Errorf("captured stdout %q, stderr %q", res.Stdout, res.Stderr)
	}
}
