package remote

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// StorePath is a store path with its NAR size in bytes.
type StorePath struct {
	Path string
	Size int64
}

// closureScript reports, in sections, the free space of the store, the
// paths of those on standard input that the store lacks (after rooting
// the new system), and the closure of the running system (when given)
// with the NAR size of each path (see the file).
var closureScript = withoutComments(closureFile)

//go:embed closure.sh
var closureFile string

// Compare reads, in one round trip, the closure of the running system
// current (with sizes; none when current is empty) together with what
// QueryStore reads: which of paths the store lacks and its free space.
// Like QueryStore, it first roots root (unless zero); the caller removes
// it with Unroot.
func (h *Host) Compare(ctx context.Context, current string, paths []string, root Root) ([]StorePath, Store, error) {
	args, err := root.args()
	if err != nil {
		return nil, Store{}, fmt.Errorf("%s: read the running system's closure: %w", h.Name, err)
	}
	in := strings.Join(paths, "\n") + "\n"
	res, err := h.run(ctx, "read the running system's closure", transport.Exec{
		Argv:  h.priv(append([]string{"sh", "-c", rooted(closureScript), "sh"}, append(args, current)...)...),
		Stdin: strings.NewReader(in),
	})
	if err != nil {
		var ce *command.Error
		if _, ok := fault.As(err); !ok && errors.As(err, &ce) {
			return nil, Store{}, fault.Wrap(err, h.Name, fault.Nix,
				fmt.Sprintf("check the host's store with \"%s\"", h.Conn.ByHand("nix-store", "-qR", orRunning(current))),
				"cannot read the closure of the running system %s: %s", orRunning(current), command.Tail(ce.Stderr, 1))
		}
		return nil, Store{}, err
	}
	closure, store, err := parseCompare(string(res.Stdout))
	if err != nil {
		return nil, Store{}, fmt.Errorf("%s: read the running system's closure: %w", h.Name, err)
	}
	return closure, store, nil
}

func orRunning(current string) string {
	if current == "" {
		return "/run/current-system"
	}
	return current
}

func parseCompare(out string) ([]StorePath, Store, error) {
	store := Store{Free: -1}
	var section string
	var paths []string
	var sizes []int64
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "@"):
			section = l
		case strings.HasPrefix(l, "df "):
			store.Free = parseStore(l).Free
		case section == "@missing" && strings.HasPrefix(l, "/"):
			store.Missing = append(store.Missing, l)
		case section == "@closure":
			paths = append(paths, l)
		case section == "@sizes":
			n, err := strconv.ParseInt(l, 10, 64)
			if err != nil {
				return nil, store, fmt.Errorf("unexpected size %q from nix-store -q --size", l)
			}
			sizes = append(sizes, n)
		}
	}
	if len(paths) != len(sizes) {
		return nil, store, fmt.Errorf("nix-store printed %d sizes for %d paths", len(sizes), len(paths))
	}
	closure := make([]StorePath, len(paths))
	for i, p := range paths {
		closure[i] = StorePath{Path: p, Size: sizes[i]}
	}
	return closure, store, nil
}

// DryActivate runs TOPLEVEL/bin/switch-to-configuration dry-activate,
// which prints what activating toplevel would do and changes nothing.
func (h *Host) DryActivate(ctx context.Context, toplevel string) (Activation, error) {
	return h.Switch(ctx, toplevel, "dry-activate", nil)
}
