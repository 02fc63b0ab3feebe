package remote

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"fmt"
	"regexp"
	"strings"

	"github.com/skiffdeploy/skiff/internal/transport"
)

// RootDir holds the GC roots of the deploys in progress on a host, one
// symlink per deploy to the system it deploys. Being under /run, they
// vanish at reboot.
const RootDir = "/run/skiff/roots"

// rootFuncs defines skiff_root, skiff_take, skiff_invalid, skiff_dfline,
// skiff_df and skiff_unroot for the scripts that need them (see the file for how a
// root is made).
//
//go:embed root.sh
var rootFile string

var rootFuncs = withoutComments(rootFile)

// Root is a deploy's GC root on a host: RootDir/ID points at Path, the new
// system, from the store query that decides what to copy until the deploy
// of that host ends, so that no garbage collection (skiff gc, deploy --gc,
// nix-collect-garbage) deletes the system between the query and the
// commit. The zero Root roots nothing.
type Root struct {
	ID   string
	Path string
}

var rootIDRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._-]{0,99}$`)

// Link is the root's symlink on the host.
func (r Root) Link() string { return RootDir + "/" + r.ID }

// args are the first positional arguments of the store query's scripts
// (missing.sh, closure.sh): ID, PATH and the name of its auto root
// (autoName), all empty for the zero Root.
func (r Root) args() ([]string, error) {
	if r == (Root{}) {
		return []string{"", "", ""}, nil
	}
	if !rootIDRE.MatchString(r.ID) || !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "\n") {
		return nil, fmt.Errorf("invalid GC root %q for %q", r.ID, r.Path)
	}
	return []string{r.ID, r.Path, r.autoName()}, nil
}

// autoName is the name Nix gives the indirect root of the root's link in
// /nix/var/nix/gcroots/auto: the base-32 SHA-1 of the link's path.
func (r Root) autoName() string {
	sum := sha1.Sum([]byte(r.Link()))
	return nix32(sum[:])
}

// nix32 is Nix's base-32 encoding of a hash.
func nix32(h []byte) string {
	const chars = "0123456789abcdfghijklmnpqrsvwxyz"
	n := (len(h)*8-1)/5 + 1
	var b strings.Builder
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		j, k := bit/8, bit%8
		c := int(h[j]) >> k
		if j+1 < len(h) {
			c |= int(h[j+1]) << (8 - k)
		}
		b.WriteByte(chars[c&0x1f])
	}
	return b.String()
}

// unrootScript removes the root $1 with the auto root $2.
var unrootScript = rootFuncs + `skiff_unroot "$1" "$2"`

// rooted prefixes script (missingScript, closureScript) with the root
// functions it calls.
func rooted(script string) string { return rootFuncs + script }

// Unroot removes the root made by QueryStore or Compare. A root left
// behind (a deployer killed before it could remove it) keeps its system
// only until the host reboots or, a day later, the next deploy to the
// host sweeps it.
func (h *Host) Unroot(ctx context.Context, r Root) error {
	if r == (Root{}) {
		return nil
	}
	args, err := r.args()
	if err != nil {
		return err
	}
	_, err = h.run(ctx, "remove the GC root "+r.Link(), transport.Exec{Argv: h.priv("sh", "-c", unrootScript, "sh", args[0], args[2])})
	return err
}
