package flake

import (
	"regexp"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// Selector chooses hosts: by name (web1), by glob (web*, db?), or by tag
// (@db), as colmena users know them.
type Selector struct {
	Kind  string `json:"kind"` // name, glob or tag
	Value string `json:"value"`
	Regex string `json:"regex,omitempty"` // POSIX ERE of a glob, for builtins.match
}

var (
	globRE = regexp.MustCompile(`^[A-Za-z0-9_.*?-]+$`)
	tagRE  = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
)

// ParseSelectors reads host selectors. Each argument may hold several,
// separated by commas (--on web1,@db). Anything else than names, globs of
// name characters with * and ?, and @tags is refused.
func ParseSelectors(args []string) ([]Selector, error) {
	var sels []Selector
	for _, arg := range args {
		for _, s := range strings.Split(arg, ",") {
			sel, err := parseSelector(strings.TrimSpace(s))
			if err != nil {
				return nil, err
			}
			sels = append(sels, sel)
		}
	}
	return sels, nil
}

func parseSelector(s string) (Selector, error) {
	hint := "select hosts by name (web1), glob (web*) or tag (@db); names are flake attribute names: letters, digits, '_', '.' and '-'"
	switch {
	case strings.HasPrefix(s, "@"):
		if !tagRE.MatchString(s[1:]) {
			return Selector{}, fault.New("", fault.Usage, hint, "invalid tag %q", s)
		}
		return Selector{Kind: "tag", Value: s[1:]}, nil
	case strings.ContainsAny(s, "*?"):
		if !globRE.MatchString(s) || strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".") {
			return Selector{}, fault.New("", fault.Usage, hint, "invalid host pattern %q", s)
		}
		return Selector{Kind: "glob", Value: s, Regex: globRegex(s)}, nil
	case ValidName(s):
		return Selector{Kind: "name", Value: s}, nil
	}
	return Selector{}, fault.New("", fault.Usage, hint, "invalid host name %q", s)
}

// globRegex turns a glob of name characters into a POSIX ERE that Nix's
// builtins.match and Go's regexp read alike.
func globRegex(g string) string {
	var b strings.Builder
	for _, c := range g {
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '.':
			b.WriteString(`\.`)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
