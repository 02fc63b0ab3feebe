package diff

import "strings"

// CompareVersions orders two versions as Nix's compareVersions does: both
// are split into components (runs of digits, or runs of other characters,
// separated by '.' and '-'); numbers compare numerically, a number is
// newer than a word ("2.3.1" > "2.3a"), "pre" is older than anything else,
// and a missing component is older than a number. It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	for a != "" || b != "" {
		var ca, cb string
		ca, a = nextComponent(a)
		cb, b = nextComponent(b)
		if componentLess(ca, cb) {
			return -1
		}
		if componentLess(cb, ca) {
			return 1
		}
	}
	return 0
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func nextComponent(s string) (comp, rest string) {
	s = strings.TrimLeft(s, ".-")
	if s == "" {
		return "", ""
	}
	i := 0
	if isDigit(s[0]) {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	} else {
		for i < len(s) && !isDigit(s[i]) && s[i] != '.' && s[i] != '-' {
			i++
		}
	}
	return s[:i], s[i:]
}

func isNumber(s string) bool { return s != "" && isDigit(s[0]) }

func componentLess(a, b string) bool {
	na, nb := isNumber(a), isNumber(b)
	switch {
	case na && nb:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	case a == "" && nb:
		return true
	case a == "pre" && b != "pre":
		return true
	case b == "pre":
		return false
	case nb:
		return true
	case na:
		return false
	}
	return a < b
}
