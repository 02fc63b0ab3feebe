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
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// importEarly reports whether host h's import may start before the store
// query answers: its copy would be one (see canImport), and it likely
// lacks the new system: the last deploy from here did not leave that one
// in its store (TargetCache.Systems). It is asked once the host's shared
// connection is up (the probe answered, or the connection opened during
// the evaluation carries the session), so the import does not log in
// again.
func (r *run) importEarly(c *remote.Host, h flake.Host) bool {
	if r.Mode == DryActivate || r.substitute() || r.copySource(h.Name) != nil || !c.ImportWithoutNixCopy() {
		return false
	}
	return r.lastSystems[h.Name] != h.OutPath
}

// maxExportArgs bounds the bytes of store paths given to one nix-store
// --export (argv has a system limit); a longer list goes by nix copy
// unless skiff writes the stream itself (exportInfos).
const maxExportArgs = 96 << 10

// canImport reports whether the missing paths can go to host c by export
// and import (importPaths) instead of nix copy: straight from this
// machine, with nothing substituted on the host. infos, when not nil, are
// their records, from which skiff writes the stream itself
// (exportInfos); otherwise nix-store --export writes it.
func (r *run) canImport(c *remote.Host, missing []string) (infos []nix.PathInfo, ok bool) {
	if len(missing) == 0 || r.substitute() || r.copySource(c.Name) != nil || !c.ImportWithoutNixCopy() {
		return nil, false
	}
	if infos := r.exportInfos(c.Name, missing); infos != nil {
		return infos, true
	}
	n := 0
	for _, p := range missing {
		n += len(p) + 1
	}
	return nil, n <= maxExportArgs
}

// anImport is one nix-store --import on a host (remote.Host.Import),
// reading what send streams to it. A deploy starts it before the store
// query has said which paths the host lacks, when the host likely lacks
// the new system (startImport): its channel and its shell are ready
// when the answer comes. One that is not used is told so (cancel), and
// nix-store never starts.
type anImport struct {
	r    *run
	c    *remote.Host
	wr   *os.File // the import's standard input
	done chan struct{}
	err  error // the import's, once done is closed
	used bool
}

// startImport starts a nix-store --import on c over its shared
// connection; nil when it cannot.
func (r *run) startImport(ctx context.Context, c *remote.Host) *anImport {
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil
	}
	im := &anImport{r: r, c: c, wr: wr, done: make(chan struct{})}
	go func() {
		defer close(im.done)
		im.err = c.Import(ctx, rd)
		// Writes to an import that has ended fail (they would block).
		rd.Close()
	}()
	return im
}

// send streams the missing paths into the import, written by skiff from
// their records (infos, from canImport) or, when infos is nil, by
// nix-store --export here, and waits for it. path is the system, for the
// hint of a failed copy.
func (im *anImport) send(ctx context.Context, path string, missing []string, infos []nix.PathInfo, total int64) error {
	r, c := im.r, im.c
	im.used = true
	// A failed write means the import has ended: its error says why.
	_, _ = io.WriteString(im.wr, remote.ImportGo)
	progress := &importProgress{r: r, host: c.Name, total: total, out: im.wr}
	var exportErr error
	if infos != nil {
		exportErr = nix.Export(ctx, progress, infos)
	} else {
		_, exportErr = r.Runner.Run(ctx, command.Cmd{Argv: append([]string{"nix-store", "--export"}, missing...), Stdout: progress})
	}
	im.wr.Close()
	<-im.done
	switch {
	case exportErr != nil && (im.err == nil || !brokenPipe(exportErr)):
		// The export failed first; the import then read a cut stream.
		return fault.Wrap(exportErr, c.Name, fault.Copy,
			"check this machine's store: \"nix-store --verify --check-contents\"",
			"reading the closure from this machine's store failed: %s", tail(exportErr))
	case im.err != nil:
		return r.copyError(c, r.Nix.CopyArgsOf(r.copySpec(c, path)), im.err)
	}
	progress.report(true)
	return nil
}

// exportInfos are the path-info records of the missing paths of host's
// closure when skiff can write their export stream itself (nix.Export:
// one nix-store process less on this machine for each host); nil when
// nix-store --export must (a path the closure read did not cover, a
// store nix.CanExport cannot read).
func (r *run) exportInfos(host string, missing []string) []nix.PathInfo {
	want := make(map[string]bool, len(missing))
	for _, p := range missing {
		want[p] = true
	}
	infos := make([]nix.PathInfo, 0, len(missing))
	for _, i := range r.closures[host] {
		if want[i.Path] {
			infos = append(infos, *i)
			delete(want, i.Path)
		}
	}
	if len(want) > 0 || !nix.CanExport(infos) {
		return nil
	}
	return infos
}

// cancel tells an import that send did not use that there is nothing to
// import (its nix-store never starts); wait
// waits for it to end (briefly: it has nothing to do). A deploy that ends
// without a copy cancels first, then gives the host back, then waits.
func (im *anImport) cancel() {
	if im == nil || im.used {
		return
	}
	im.used = true
	_, _ = io.WriteString(im.wr, remote.ImportNone)
	im.wr.Close()
}

func (im *anImport) wait() {
	if im == nil {
		return
	}
	select {
	case <-im.done:
	case <-time.After(5 * time.Second):
	}
}

// importPaths sends the paths the host lacks (the store query named them)
// as one stream: an export stream written here, read by nix-store --import on
// the host over the shared connection, started now unless started early
// (im). nix copy would first ask the host again which paths it has, in
// round trips of its own. The stream passes through skiff, which counts
// it for the progress reports. path is the system, for the hint of a
// failed copy.
func (r *run) importPaths(ctx context.Context, c *remote.Host, im *anImport, path string, missing []string, infos []nix.PathInfo, total int64) error {
	if im == nil || im.used {
		if im = r.startImport(ctx, c); im == nil {
			return fmt.Errorf("%s: copy: cannot make a pipe", c.Name)
		}
	}
	return im.send(ctx, path, missing, infos, total)
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
// saying so (its own, or skiff's passing its output on).
func brokenPipe(err error) bool {
	if errors.Is(err, syscall.EPIPE) {
		return true // nix.Export's write
	}
	var ce *command.Error
	if !errors.As(err, &ce) {
		return false
	}
	if errors.Is(ce.Err, syscall.EPIPE) {
		return true
	}
	var exit *exec.ExitError
	if errors.As(ce.Err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE {
			return true
		}
	}
	return strings.Contains(ce.Stderr, "Broken pipe") || strings.Contains(ce.Stderr, "broken pipe")
}

// importProgress counts the export stream on its way to the host (out)
// and reports how much of it was sent, at most every quarter of a second.
type importProgress struct {
	r     *run
	host  string
	total int64
	out   io.Writer
	mu    sync.Mutex
	done  int64
	last  time.Time
}

func (p *importProgress) Write(b []byte) (int, error) {
	n, err := p.out.Write(b)
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
