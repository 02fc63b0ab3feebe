package flake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// Ref is a flake reference as nix understands it.
type Ref struct {
	URL string // what nix is given
	Dir string // the local directory, when the flake is a local path
}

// ParseRef turns the --flake argument into a reference. Local paths are
// made absolute (Nix 2.8 reads a bare relative path as a registry name)
// and must hold a flake.nix.
func ParseRef(arg string) (Ref, error) {
	if arg == "" {
		arg = "."
	}
	if strings.Contains(arg, ":") && !strings.HasPrefix(arg, "/") && !strings.HasPrefix(arg, ".") {
		return Ref{URL: arg}, nil // github:owner/repo, git+https://..., path:...
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return Ref{}, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return Ref{}, fault.Wrap(err, "", fault.Usage, "pass the directory that holds flake.nix with --flake PATH",
			"flake %s does not exist", arg)
	}
	if !st.IsDir() {
		return Ref{}, fault.New("", fault.Usage, "pass the directory that holds flake.nix, not the file itself",
			"flake %s is not a directory", arg)
	}
	if _, err := os.Stat(filepath.Join(abs, "flake.nix")); err != nil {
		return Ref{}, fault.New("", fault.Usage, "run skiff in the flake's directory or pass --flake PATH",
			"%s has no flake.nix", abs)
	}
	return Ref{URL: abs, Dir: abs}, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// ValidName reports whether s can be a host name (a flake attribute skiff
// accepts): letters, digits, '_', '.', '-', not starting with '.' or '-'.
func ValidName(s string) bool { return len(s) <= 253 && nameRE.MatchString(s) }

// Settings are a host's deployment settings from the flake.
type Settings struct {
	TargetHost string   `json:"targetHost"`
	TargetPort int      `json:"targetPort"`
	TargetUser string   `json:"targetUser"`
	Tags       []string `json:"tags"`
}

// Host is one evaluated configuration.
type Host struct {
	Name       string
	Kind       string // "nixos"
	Deployment Settings
	DrvPath    string
	OutPath    string
	System     string // platform, e.g. x86_64-linux
}

// evalResult is what the apply function returns.
type evalResult struct {
	Names []string                   `json:"names"`
	Hosts map[string]json.RawMessage `json:"hosts"`
}

type evalHost struct {
	Deployment json.RawMessage `json:"deployment"`
	DrvPath    string          `json:"drvPath"`
	OutPath    string          `json:"out"` // not outPath: toJSON turns such sets into strings
	System     *string         `json:"system"`
}

// applyExpr selects the named configurations and projects what skiff
// needs, so the whole fleet is evaluated by one nix eval. names is
// validated (ValidName) and encoded as JSON, which is also a Nix string.
func applyExpr(names []string) string {
	sel := []byte("null")
	if len(names) > 0 {
		sel, _ = json.Marshal(names)
	}
	return "cfgs: let want = builtins.fromJSON ''" + string(sel) + "''; " +
		"pick = if want == null then builtins.attrNames cfgs else builtins.filter (n: builtins.hasAttr n cfgs) want; " +
		"one = name: let c = (builtins.getAttr name cfgs).config; p = c.nixpkgs or {}; t = c.system.build.toplevel; in { " +
		"deployment = c.deployment or {}; drvPath = t.drvPath; out = t.outPath; " +
		"system = (p.hostPlatform or {}).system or p.system or null; }; " +
		"in { names = builtins.attrNames cfgs; hosts = builtins.listToAttrs (map (n: { name = n; value = one n; }) pick); }"
}

// unknownHost lists the hosts a flake has.
func unknownHost(name string, known []string) error {
	hint := "the flake defines no nixosConfigurations"
	if len(known) > 0 {
		hint = "known hosts: " + strings.Join(known, ", ")
	}
	return fault.New("", fault.Usage, hint, "unknown host %q in the flake", name)
}

// Evaluate evaluates the named hosts of the flake with one nix eval. An
// empty names list selects every host.
func Evaluate(ctx context.Context, n *nix.Nix, ref Ref, names []string) ([]Host, error) {
	for _, name := range names {
		if !ValidName(name) {
			return nil, fault.New("", fault.Usage, "host names are flake attribute names: letters, digits, '_', '.' and '-'",
				"invalid host name %q", name)
		}
	}
	var res evalResult
	err := n.EvalJSON(ctx, ref.URL+"#nixosConfigurations", applyExpr(names), &res)
	if err != nil {
		return nil, evalError(err, ref)
	}
	sort.Strings(res.Names)
	if len(names) == 0 {
		if len(res.Names) == 0 {
			return nil, fault.New("", fault.Usage, "define nixosConfigurations.NAME in the flake", "the flake %s defines no hosts", ref.URL)
		}
		for _, name := range res.Names {
			if !ValidName(name) {
				return nil, fault.New("", fault.Usage, "rename the configuration: letters, digits, '_', '.' and '-'",
					"the flake defines a host with an invalid name %q", name)
			}
		}
		names = res.Names
	}
	var hosts []Host
	for _, name := range names {
		raw, ok := res.Hosts[name]
		if !ok {
			return nil, unknownHost(name, res.Names)
		}
		var eh evalHost
		if err := json.Unmarshal(raw, &eh); err != nil {
			return nil, fmt.Errorf("evaluate %s: %w", name, err)
		}
		h := Host{Name: name, Kind: "nixos", DrvPath: eh.DrvPath, OutPath: eh.OutPath}
		if eh.System != nil {
			h.System = *eh.System
		}
		if len(eh.Deployment) > 0 {
			if err := json.Unmarshal(eh.Deployment, &h.Deployment); err != nil {
				return nil, fault.Wrap(err, name, fault.Eval,
					"deployment must be { targetHost = \"...\"; targetPort = 22; targetUser = \"...\"; tags = [ ... ]; }",
					"bad deployment settings: %v", err)
			}
		}
		if err := h.check(); err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9_.:%\[\]-]+$`)
var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*\$?$`)

// check refuses settings that would be unsafe or meaningless to hand to
// ssh: an option-like destination, a bad port or user name.
func (h Host) check() error {
	d := h.Deployment
	if d.TargetHost != "" && (!hostRE.MatchString(d.TargetHost) || strings.HasPrefix(d.TargetHost, "-")) {
		return fault.New(h.Name, fault.Usage, "deployment.targetHost must be a host name or an address",
			"invalid deployment.targetHost %q", d.TargetHost)
	}
	if d.TargetPort < 0 || d.TargetPort > 65535 {
		return fault.New(h.Name, fault.Usage, "deployment.targetPort must be between 1 and 65535",
			"invalid deployment.targetPort %d", d.TargetPort)
	}
	if d.TargetUser != "" && !userRE.MatchString(d.TargetUser) {
		return fault.New(h.Name, fault.Usage, "deployment.targetUser must be a user name",
			"invalid deployment.targetUser %q", d.TargetUser)
	}
	if h.DrvPath == "" || h.OutPath == "" {
		return errors.New(h.Name + ": configuration has no system.build.toplevel")
	}
	return nil
}

var storeSrcRE = regexp.MustCompile(`/nix/store/[a-z0-9]{32}-source`)

// evalError shortens nix's message to its error lines and source
// locations, naming files in the user's flake rather than its store copy.
func evalError(err error, ref Ref) error {
	var ce *command.Error
	if !errors.As(err, &ce) {
		return fault.Wrap(err, "", fault.Eval, "run nix eval by hand to see the whole message", "evaluate flake %s: %v", ref.URL, err)
	}
	text := ce.Stderr
	if ref.Dir != "" {
		text = storeSrcRE.ReplaceAllString(text, ref.Dir)
	}
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "error:") || strings.HasPrefix(t, "at ") {
			keep = append(keep, t)
		}
	}
	msg := strings.Join(keep, "; ")
	if msg == "" {
		msg = command.Tail(text, 3)
	}
	if len(msg) > 600 {
		msg = msg[:600] + "..."
	}
	return fault.Wrap(err, "", fault.Eval,
		fmt.Sprintf("fix the flake, then check it with \"nix eval %s#nixosConfigurations --apply builtins.attrNames\"", ref.URL),
		"cannot evaluate flake %s: %s", ref.URL, msg)
}
