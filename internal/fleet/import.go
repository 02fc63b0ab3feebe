package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// maxExportArgs bounds the bytes of store paths given to one nix-store
// --export (argv has a system limit); a longer list goes by nix copy.
const maxExportArgs = 96 << 10

// canImport reports whether the missing paths can go to host c by export
// and import (importPaths) instead of nix copy: straight from this
// machine, with nothing substituted on the host.
func (r *run) canImport(c *remote.Host, missing []string) bool {
	if len(missing) == 0 || r.substitute() || r.copySource(c.Name) != nil || !c.ImportWithoutNixCopy() {
		return false
	}
	n := 0
	for _, p := range missing {
		n += len(p) + 1
	}
	return n <= maxExportArgs
}

// importPaths sends the paths the host lacks (the store query named them)
// as one stream: nix-store --export here, read by nix-store --import on
// the host over the shared connection. nix copy would first ask the host
// again which paths it has, in round trips of its own. The stream passes
// through skiff, which counts it for the progress reports. path is the
// system, for the hint of a failed copy.
func (r *run) importPaths(ctx context.Context, c *remote.Host, path string, missing []string, total int64) error {
	rd, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	var exportErr error
	exported := make(chan struct{})
	go func() {
		defer close(exported)
		_, exportErr = r.Runner.Run(ctx, command.Cmd{Argv: append([]string{"nix-store", "--export"}, missing...), Stdout: wr})
		wr.Close()
	}()
	progress := &importProgress{r: r, host: c.Name, total: total, in: rd}
	importErr := c.Import(ctx, progress)
	// An import that ended early stops the export: its writes fail.
	rd.Close()
	<-exported
	switch {
	case exportErr != nil && (importErr == nil || !brokenPipe(exportErr)):
		// The export failed first; the import then read a cut stream.
		return fault.Wrap(exportErr, c.Name, fault.Copy,
			"check this machine's store: \"nix-store --verify --check-contents\"",
			"reading the closure from this machine's store failed: %s", tail(exportErr))
	case importErr != nil:
		return r.copyError(c, r.Nix.CopyArgsOf(r.copySpec(c, path)), importErr)
	}
	progress.report(true)
	return nil
}

// tail is the end of a failed command's standard error, or the error.
func tail(err error) string {
	var ce *command.Error
	if errors.As(err, &ce) && command.Tail(ce.Stderr, 2) != "" {
		return command.Tail(ce.Stderr, 2)
	}
	return err.Error()
}

// brokenPipe reports whether the export was stopped by its reader going
// away (the import failed first): killed by SIGPIPE, or a write error
// saying so.
func brokenPipe(err error) bool {
	var ce *command.Error
	if !errors.As(err, &ce) {
		return false
	}
	var exit *exec.ExitError
	if errors.As(ce.Err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE {
			return true
		}
	}
	return strings.Contains(ce.Stderr, "Broken pipe") || strings.Contains(ce.Stderr, "broken pipe")
}

// importProgress counts the export stream on its way to the host and
// reports how much of it was sent, at most every quarter of a second.
type importProgress struct {
	r     *run
	host  string
	total int64
	in    io.Reader
	mu    sync.Mutex
	done  int64
	last  time.Time
}

func (p *importProgress) Read(b []byte) (int, error) {
	n, err := p.in.Read(b)
	p.mu.Lock()
	p.done += int64(n)
	p.mu.Unlock()
	if n > 0 {
		p.report(false)
	}
	return n, err
}

func (p *importProgress) report(final bool) {
	p.mu.Lock()
	now := time.Now()
	if !final && now.Sub(p.last) < 250*time.Millisecond {
		p.mu.Unlock()
		return
	}
	p.last = now
	// The stream holds a little more than the NARs (names, references).
	done := min(p.done, p.total)
	if final {
		done = p.total
	}
	p.mu.Unlock()
	p.r.Reporter.Event(Event{Time: now, Host: p.host, Phase: PhaseCopy, Progress: true, Done: done, Total: p.total,
		Msg: fmt.Sprintf("%s of %s", human.Bytes(done), human.Bytes(p.total))})
}
