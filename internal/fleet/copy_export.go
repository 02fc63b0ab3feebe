package fleet

import "context"

// Copy sends the closure of path to the named host with nix copy over its
// shared connection; nix copy sends only the paths the host lacks. sizes
// (NAR size by path) and total (bytes expected) drive progress reports.
func (s *Session) Copy(ctx context.Context, host, path string, sizes map[string]int64, total int64) error {
	return s.run.copy(ctx, s.run.conns[host], path, sizes, total)
}

// Reporter is where the session's events go (deploy --plan pauses a live
// view through it while it asks).
func (s *Session) Reporter() Reporter { return s.run.Reporter }
