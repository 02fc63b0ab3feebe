package fleet

import "context"

// Copy sends the closure of path to the named host over its shared
// connection, as a deploy does: missing, the paths the host lacks (from
// its store query), in one export stream that nix-store --import reads on
// the host, where they can go that way; else nix copy, which sends only
// what the host lacks. sizes (NAR size by path) and total (bytes
// expected) drive progress reports.
func (s *Session) Copy(ctx context.Context, host, path string, missing []string, sizes map[string]int64, total int64) error {
	_, err := s.run.copySent(ctx, s.run.conns[host], nil, path, missing, sizes, total)
	return err
}

// Reporter is where the session's events go (deploy --plan pauses a live
// view through it while it asks).
func (s *Session) Reporter() Reporter { return s.run.Reporter }
