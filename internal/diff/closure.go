package diff

import (
	"path"
	"sort"
	"strings"
)

// Path is a store path of a closure with its NAR size in bytes.
type Path struct {
	Path string
	Size int64
}

// Package is a name with its version(s) in one closure.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Change is a package whose versions differ between two closures. Old and
// New list the versions of each side, ", "-separated when a closure holds
// several.
type Change struct {
	Name string `json:"name"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// Closure is the difference between a running closure and a new one.
type Closure struct {
	// System is the version change of the system itself (the roots, e.g.
	// nixos-system-web1-24.05... → ...-24.11...); nil when it is the same.
	System  *Change
	Added   []Package
	Removed []Package
	Changed []Change
	// OldSize and NewSize are the closures' NAR sizes; SizeDelta is
	// NewSize - OldSize.
	OldSize, NewSize, SizeDelta int64
}

// Empty reports whether no version changed and no package came or went.
func (c Closure) Empty() bool {
	return c.System == nil && len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// StoreName is a store path's name: its base name without the hash.
func StoreName(p string) string {
	base := path.Base(p)
	if len(base) > 33 && base[32] == '-' {
		return base[33:]
	}
	return base
}

// ParseName splits a store name into name and version as Nix's
// builtins.parseDrvName does: the version starts after the first '-' that
// is followed by something other than a letter ("openssl-3.0.13" →
// "openssl", "3.0.13"; "etc" has no version).
func ParseName(s string) (name, version string) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && !isLetter(s[i+1]) {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

// Compare computes the difference from the closure old (rooted at
// oldRoot, the running system; empty when the host runs none) to new
// (rooted at newRoot). The roots are compared as System, not as packages.
func Compare(oldRoot string, old []Path, newRoot string, new []Path) Closure {
	var c Closure
	oldVers, oldSize := versions(old, oldRoot)
	newVers, newSize := versions(new, newRoot)
	c.OldSize, c.NewSize, c.SizeDelta = oldSize, newSize, newSize-oldSize

	if oldRoot != "" {
		_, ov := ParseName(StoreName(oldRoot))
		_, nv := ParseName(StoreName(newRoot))
		if ov != nv {
			c.System = &Change{Name: "nixos", Old: ov, New: nv}
		}
	}
	for name, nv := range newVers {
		ov, ok := oldVers[name]
		switch {
		case !ok:
			c.Added = append(c.Added, Package{Name: name, Version: joinVersions(nv)})
		case joinVersions(ov) != joinVersions(nv):
			c.Changed = append(c.Changed, Change{Name: name, Old: joinVersions(ov), New: joinVersions(nv)})
		}
	}
	for name, ov := range oldVers {
		if _, ok := newVers[name]; !ok {
			c.Removed = append(c.Removed, Package{Name: name, Version: joinVersions(ov)})
		}
	}
	sort.Slice(c.Added, func(i, j int) bool { return c.Added[i].Name < c.Added[j].Name })
	sort.Slice(c.Removed, func(i, j int) bool { return c.Removed[i].Name < c.Removed[j].Name })
	sort.Slice(c.Changed, func(i, j int) bool { return c.Changed[i].Name < c.Changed[j].Name })
	return c
}

// versions groups a closure's paths (the root left out) by name, with the
// set of versions of each, and sums the sizes of every path.
func versions(paths []Path, root string) (map[string]map[string]bool, int64) {
	out := map[string]map[string]bool{}
	var size int64
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p.Path] {
			continue
		}
		seen[p.Path] = true
		size += p.Size
		if p.Path == root {
			continue
		}
		name, version := ParseName(StoreName(p.Path))
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		out[name][version] = true
	}
	return out, size
}

// joinVersions lists a set of versions in order; an empty version is
// left out unless it is the only one.
func joinVersions(set map[string]bool) string {
	var vs []string
	for v := range set {
		if v != "" {
			vs = append(vs, v)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return CompareVersions(vs[i], vs[j]) < 0 })
	return strings.Join(vs, ", ")
}
