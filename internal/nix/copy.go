package nix

import (
	"net/url"
	"strings"
)

// RedactStoreURL shortens a store URL for messages: its query (which may
// name a signing key file) is dropped.
func RedactStoreURL(u string) string {
	if p, err := url.Parse(u); err == nil && p.RawQuery != "" {
		p.RawQuery = ""
		return p.String()
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// Copy is one "nix copy".
type Copy struct {
	// From is the source store URL; empty means the local store. When
	// From and To are both ssh:// URLs, nix reads from one and writes to
	// the other: the data passes through the machine that runs it.
	From string
	To   string
	// Substitute lets the destination fetch what it can from its own
	// substituters first (--substitute-on-destination; ssh stores only).
	Substitute bool
	Paths      []string
}

// CopyArgsOf is the argv of the nix copy c.
func (n *Nix) CopyArgsOf(c Copy) []string {
	args := []string{"copy"}
	if c.From != "" {
		args = append(args, "--from", c.From)
	}
	args = append(args, "--to", c.To)
	if c.Substitute {
		args = append(args, "--substitute-on-destination")
	}
	return n.argv(append(args, c.Paths...)...)
}
