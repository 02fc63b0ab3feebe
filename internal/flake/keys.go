package flake

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/keys"
)

// keyFilesExpr defines keyFilesAsStrings for the evaluation expression:
// a keyFile given as a path value (./secret) becomes its string before
// builtins.toJSON, which would otherwise copy the file into the Nix store
// (nix/module.nix does the same with apply = toString).
const keyFilesExpr = "keyFilesAsStrings = d: if builtins.isAttrs d && builtins.isAttrs (d.keys or null) then d // { keys = builtins.mapAttrs (n: k: " +
	"if builtins.isAttrs k && builtins.isPath (k.keyFile or null) then k // { keyFile = toString k.keyFile; } else k) d.keys; } else d; "

// keysExample is the hint of every deployment.keys type error.
const keysExample = `deployment.keys.NAME = { keyFile = "/path/on/this/machine"; destDir = "/run/keys"; user = "root"; group = "root"; permissions = "0600"; uploadAt = "pre-activation"; }`

// decodeKeys reads deployment.keys: an attribute set of keys in colmena's
// schema, with colmena's defaults for what is unset. A text that is not a
// string is named by its type only, never quoted.
func decodeKeys(host string, raw json.RawMessage) (map[string]keys.Spec, error) {
	if isNull(raw) {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || bytes.TrimSpace(raw)[0] != '{' {
		return nil, settingError(host, "deployment.keys", tSet+" of keys", raw)
	}
	attrs := make([]string, 0, len(m))
	for a := range m {
		attrs = append(attrs, a)
	}
	sort.Strings(attrs)
	out := map[string]keys.Spec{}
	for _, a := range attrs {
		kraw := m[a]
		setting := "deployment.keys." + a
		var km map[string]json.RawMessage
		if err := json.Unmarshal(kraw, &km); err != nil || bytes.TrimSpace(kraw)[0] != '{' {
			return nil, keySettingError(host, setting, tSet, kraw)
		}
		var s keys.Spec
		if t, ok := km["text"]; ok && !isNull(t) {
			var text string
			if err := json.Unmarshal(t, &text); err != nil {
				return nil, keySettingError(host, setting+".text", tString, t)
			}
			s.Text = &text
		}
		if c, ok := km["keyCommand"]; ok && !isNull(c) {
			if err := decodeField(host, setting+".keyCommand", c, &s.KeyCommand, tList); err != nil {
				return nil, err
			}
			if s.KeyCommand == nil {
				s.KeyCommand = []string{}
			}
		}
		for _, f := range []struct {
			key string
			dst *string
		}{
			{"name", &s.Name}, {"keyFile", &s.KeyFile}, {"destDir", &s.DestDir}, {"user", &s.User},
			{"group", &s.Group}, {"permissions", &s.Permissions}, {"uploadAt", &s.UploadAt},
		} {
			if err := decodeField(host, setting+"."+f.key, km[f.key], f.dst, tString); err != nil {
				return nil, err
			}
		}
		out[a] = s.WithDefaults(a)
	}
	return out, nil
}

// keySettingError is settingError for a key, naming the type it has
// without quoting the value (which may be the secret).
func keySettingError(host, setting, want string, raw json.RawMessage) error {
	has := nixType(raw)
	if i := strings.IndexByte(has, '('); i > 0 {
		has = strings.TrimSpace(has[:i])
	}
	return fault.New(host, fault.Usage, "in the flake: "+keysExample, "%s must be %s, not %s", setting, want, has)
}

// keyFilesInFlake points keyFiles given as path values inside the flake
// (evaluated as paths in its store copy) back at the flake's directory
// when the store copy lacks them: a secret kept out of git is not in it.
func keyFilesInFlake(ks map[string]keys.Spec, ref Ref) map[string]keys.Spec {
	if ref.Dir == "" {
		return ks
	}
	for a, k := range ks {
		src := storeSrcRE.FindString(k.KeyFile)
		if src == "" || !strings.HasPrefix(k.KeyFile, src) {
			continue
		}
		if _, err := os.Stat(k.KeyFile); err == nil {
			continue
		}
		k.KeyFile = ref.Dir + strings.TrimPrefix(k.KeyFile, src)
		ks[a] = k
	}
	return ks
}
