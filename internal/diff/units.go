package diff

import (
	"regexp"
	"strings"
)

// Units are what activation would do to systemd units, as
// switch-to-configuration dry-activate reports it.
type Units struct {
	Stop    []string `json:"stop"`
	Start   []string `json:"start"`
	Restart []string `json:"restart"`
	Reload  []string `json:"reload"`
}

// Empty reports whether activation would touch no unit.
func (u Units) Empty() bool {
	return len(u.Stop)+len(u.Start)+len(u.Restart)+len(u.Reload) == 0
}

// "would stop the following units: a.service, b.service" and the same for
// start, restart and reload. User units ("the following user units") and
// "would NOT stop the following changed units" are not system unit actions.
var wouldRE = regexp.MustCompile(`^would (stop|start|restart|reload) the following units: (.*)$`)

// ParseDryActivate reads the output of switch-to-configuration
// dry-activate (NixOS prints it on standard error; other lines, such as
// "would activate the configuration...", are ignored).
func ParseDryActivate(out string) Units {
	u := Units{Stop: []string{}, Start: []string{}, Restart: []string{}, Reload: []string{}}
	for _, line := range strings.Split(out, "\n") {
		m := wouldRE.FindStringSubmatch(strings.TrimRight(line, "\r "))
		if m == nil {
			continue
		}
		var list *[]string
		switch m[1] {
		case "stop":
			list = &u.Stop
		case "start":
			list = &u.Start
		case "restart":
			list = &u.Restart
		case "reload":
			list = &u.Reload
		}
		for _, name := range strings.Split(m[2], ",") {
			if name = strings.TrimSpace(name); name != "" && !contains(*list, name) {
				*list = append(*list, name)
			}
		}
	}
	return u
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
