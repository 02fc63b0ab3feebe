package flake

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// settingsExample is the hint of every settings error: what each setting
// looks like in Nix.
const settingsExample = `deployment = { targetHost = "web1.example.com"; targetPort = 22; targetUser = "deploy"; tags = [ "web" ]; critical = false; ` +
	`healthChecks = { commands = [ "systemctl is-active nginx" ]; urls = [ "https://web1.example.com/health" ]; timeout = 10; }; buildHost = "builder"; }`

// Nix types as the settings errors name them.
const (
	tString = "a string"
	tInt    = "an integer"
	tBool   = "a boolean"
	tList   = "a list of strings"
	tSet    = "an attribute set"
)

// nixType describes a JSON value as the Nix value it came from.
func nixType(raw json.RawMessage) string {
	v := bytes.TrimSpace(raw)
	if len(v) == 0 {
		return "nothing"
	}
	quoted := func() string {
		s := string(v)
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return s
	}
	switch v[0] {
	case '"':
		return "a string (" + quoted() + ")"
	case '{':
		return "an attribute set"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean (" + string(v) + ")"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(v, ".eE") {
		return "a float (" + quoted() + ")"
	}
	return "an integer (" + quoted() + ")"
}

// settingError names the host, the setting, the type it must have and the
// one it has: a usage error, refused before any host is touched.
func settingError(host, setting, want string, raw json.RawMessage) error {
	return fault.New(host, fault.Usage, "in the flake: "+settingsExample,
		"%s must be %s, not %s", setting, want, nixType(raw))
}

// decodeSettings reads a host's deployment settings, checking the type of
// each one it knows; settings it does not know (other tools' settings) are
// left alone. null means unset.
func decodeSettings(host string, raw json.RawMessage) (Settings, error) {
	var s Settings
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return s, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || bytes.TrimSpace(raw)[0] != '{' {
		return s, settingError(host, "deployment", tSet, raw)
	}
	fields := []field{
		{"targetHost", &s.TargetHost, tString},
		{"targetPort", &s.TargetPort, tInt + " (a port number)"},
		{"targetUser", &s.TargetUser, tString},
		{"tags", &s.Tags, tList},
		{"critical", &s.Critical, tBool},
		{"buildHost", &s.BuildHost, tString},
		{"buildOnTarget", &s.BuildOnTarget, tBool},
		{"privilegeEscalationCommand", &s.PrivilegeEscalationCommand, tList},
		{"sshOptions", &s.SSHOptions, tList},
	}
	if err := decodeFields(host, "deployment.", m, fields); err != nil {
		return s, err
	}
	var err error
	if s.Keys, err = decodeKeys(host, m["keys"]); err != nil {
		return s, err
	}
	hc, ok := m["healthChecks"]
	if !ok || isNull(hc) {
		return s, nil
	}
	var hm map[string]json.RawMessage
	if err := json.Unmarshal(hc, &hm); err != nil || bytes.TrimSpace(hc)[0] != '{' {
		return s, settingError(host, "deployment.healthChecks", tSet+" { commands; urls; timeout; }", hc)
	}
	return s, decodeFields(host, "deployment.healthChecks.", hm, []field{
		{"commands", &s.HealthChecks.Commands, tList},
		{"urls", &s.HealthChecks.URLs, tList},
		{"timeout", &s.HealthChecks.Timeout, tInt + " (seconds)"},
	})
}

// field is one setting to decode: its key, where it goes, and the type
// it must have as the errors name it.
type field struct {
	key  string
	dst  any
	want string
}

// decodeFields decodes each of fields from m, naming a wrong one as
// prefix+key.
func decodeFields(host, prefix string, m map[string]json.RawMessage, fields []field) error {
	for _, f := range fields {
		if err := decodeField(host, prefix+f.key, m[f.key], f.dst, f.want); err != nil {
			return err
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	v := bytes.TrimSpace(raw)
	return len(v) == 0 || string(v) == "null"
}

// decodeField decodes one setting into dst, or names what is wrong with
// it. A list must hold strings only: the element that is not one is named.
func decodeField(host, setting string, raw json.RawMessage, dst any, want string) error {
	if isNull(raw) {
		return nil
	}
	if list, ok := dst.(*[]string); ok {
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil || bytes.TrimSpace(raw)[0] != '[' {
			return settingError(host, setting, want, raw)
		}
		for i, e := range elems {
			var s string
			if err := json.Unmarshal(e, &s); err != nil || isNull(e) {
				return settingError(host, fmt.Sprintf("element %d of %s", i+1, setting), tString, e)
			}
			*list = append(*list, s)
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return settingError(host, setting, want, raw)
	}
	return nil
}
