package cli

import (
	"os"

	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// reach is what every command that connects to hosts starts from: the
// flake, and the ssh options with a private directory for the shared
// connections' sockets. close removes that directory.
type reach struct {
	ref flake.Ref
	ssh transport.Options
	dir string
}

func (r reach) close() { os.RemoveAll(r.dir) }

// reach checks the host selectors and the flake before anything runs, and
// sets up the ssh options.
func (g *globals) reach(selectors []string) (reach, error) {
	if _, err := flake.ParseSelectors(selectors); err != nil {
		return reach{}, err
	}
	ref, err := flake.ParseRef(g.flake)
	if err != nil {
		return reach{}, err
	}
	dir, err := transport.NewControlDir()
	if err != nil {
		return reach{}, err
	}
	sshOpts, err := g.sshOptionsFor(dir)
	if err != nil {
		os.RemoveAll(dir)
		return reach{}, err
	}
	return reach{ref: ref, ssh: sshOpts, dir: dir}, nil
}
