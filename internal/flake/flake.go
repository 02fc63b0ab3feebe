package flake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/keys"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// Ref is a flake reference as nix understands it.
type Ref struct {
	URL string // what nix is given
	Dir string // the local directory, when the flake is a local path
}

// LocalRef reports whether a flake reference is a local path (a
// directory), not a URL such as github:owner/repo or path:...
func LocalRef(arg string) bool {
	return !strings.Contains(arg, ":") || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".")
}

// ParseRef turns the --flake argument into a reference. Local paths are
// made absolute (Nix 2.8 reads a bare relative path as a registry name)
// and must hold a flake.nix.
func ParseRef(arg string) (Ref, error) {
	if arg == "" {
		arg = "."
	}
	if !LocalRef(arg) {
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
	Critical   bool     `json:"critical"` // deployed last, only after every other host succeeded
	// BuildHost, when set, builds the host's system there instead of on
	// the deploying machine (an ssh destination, like targetHost).
	BuildHost string `json:"buildHost"`
	// BuildOnTarget (colmena's) builds the host's system on the host
	// itself: the host is its own build host.
	BuildOnTarget bool `json:"buildOnTarget"`
	// PrivilegeEscalationCommand (colmena's) is how a login other than
	// root gains root. skiff runs sudo its own way (sudo -n, or the
	// --ask-sudo-password wrapper), so only a sudo command is taken.
	PrivilegeEscalationCommand []string `json:"privilegeEscalationCommand"`
	// SSHOptions (colmena's) are extra ssh arguments: skiff takes a port
	// from them (as TargetPort) and refuses any other (TakeSSHOptions).
	SSHOptions []string `json:"sshOptions"`
	// MagicRollback and ConfirmTimeout (seconds) are deploy-rs's: the
	// host's own --magic-rollback and --confirm-timeout, which the
	// command line's flags, when given, override (nil, 0: unset). They
	// come from deploy-rs only, not from deployment.*.
	MagicRollback  *bool `json:"-"`
	ConfirmTimeout int   `json:"-"`
	// OtherProfiles are the profiles of the host's deploy-rs node other
	// than its system, which skiff does not deploy.
	OtherProfiles []string `json:"-"`
	// HealthChecks run after activation, before the new system is kept.
	HealthChecks HealthChecks `json:"healthChecks"`
	// Keys are the host's secrets (colmena's deployment.keys), by
	// attribute name, with colmena's defaults filled in and checked.
	Keys map[string]keys.Spec `json:"keys"`
}

// HealthChecks are a host's checks after activation: commands run on the
// host (sh -c, privileged) and HTTP(S) URLs fetched from the deployer,
// each retried until Timeout seconds (0: 10).
type HealthChecks struct {
	Commands []string `json:"commands"`
	URLs     []string `json:"urls"`
	Timeout  int      `json:"timeout"`
}

// Host is one evaluated configuration.
type Host struct {
	Name string
	Kind string // KindNixOS or KindDarwin
	// Attr is the flake attribute of its configuration:
	// nixosConfigurations.NAME, darwinConfigurations.NAME, or
	// colmenaHive.nodes.NAME (colmena's evaluated hive).
	Attr       string
	Deployment Settings
	DrvPath    string
	OutPath    string
	System     string // platform the host runs, e.g. x86_64-linux
	// LocalOnly: the host is a colmena node whose deployment.targetHost
	// is null, which colmena deploys only on the host itself (OverSSH).
	LocalOnly bool
	// UserFromSSH: the host is a colmena node whose deployment.targetUser
	// is null, which colmena leaves to ssh: the login is the User that
	// the ssh configuration gives the host, else the local user (see
	// fleet.UsersFromSSH).
	UserFromSSH bool
	// BuildSystem is the platform the toplevel derivation is built on
	// (its "system" attribute): what decides which machine can build it.
	BuildSystem string
}

// Kinds of hosts: which flake output a configuration comes from.
const (
	KindNixOS  = "nixos"  // nixosConfigurations.NAME
	KindDarwin = "darwin" // darwinConfigurations.NAME (nix-darwin)
)

// Darwin reports whether h is a nix-darwin host.
func (h Host) Darwin() bool { return h.Kind == KindDarwin }

// evalResult is what the apply function returns.
type evalResult struct {
	Names []string                   `json:"names"`
	Tags  map[string]json.RawMessage `json:"tags"` // checked by tagsOf
	Hosts map[string]json.RawMessage `json:"hosts"`
	Both  []string                   `json:"both"` // names in both nixos- and darwinConfigurations
	// RawHive: the flake has colmena's hive as written (outputs.colmena)
	// and not colmena's evaluation of it (outputs.colmenaHive).
	RawHive bool `json:"rawHive"`
	// DeployRsOnly are deploy-rs nodes with a system profile and no
	// configuration of their name: skiff finds a node's system by its
	// name. (A node without a system profile, home-manager's only, is
	// none of skiff's business.)
	DeployRsOnly []string `json:"deployRsOnly"`
	// AllowApplyAll is colmena's meta.allowApplyAll, from colmenaHive
	// (nil without one).
	AllowApplyAll *bool `json:"allowApplyAll"`
}

type evalHost struct {
	// Deployment is the settings as JSON text (serialized inside the
	// host's error context, so that an error in them names the host).
	Deployment string  `json:"deployment"`
	DrvPath    string  `json:"drvPath"`
	OutPath    string  `json:"out"` // not outPath: toJSON turns such sets into strings
	System     *string `json:"system"`
	Kind       string  `json:"kind"`
	From       string  `json:"from"` // nixosConfigurations, darwinConfigurations or colmenaHive.nodes
	Build      *string `json:"buildSystem"`
	// DeployRs is the settings of the deploy-rs node of the same name
	// (outputs.deploy.nodes.NAME) as JSON text, when there is one.
	DeployRs *string `json:"deployRs"`
	// NotSystem: the configuration has no config.system.build.toplevel.
	NotSystem bool `json:"notSystem"`
}

// FlakeEnv is the environment variable that hands the flake reference to
// the evaluation expression (data is never interpolated into it).
const FlakeEnv = "SKIFF_FLAKE"

// configsExpr binds, inside a let where flake is the flake, where its
// hosts come from: own (nixosConfigurations), hive (the nodes of colmena's
// evaluated hive, colmenaHive), nixos (both; nixosConfigurations wins a
// name both define), darwin (darwinConfigurations) and cfgs (all of them).
// Every evaluation that names hosts uses it (evalExpr, namesExpr).
const configsExpr = "own = flake.nixosConfigurations or {}; hive = (flake.colmenaHive or {}).nodes or {}; nixos = hive // own; " +
	"darwin = flake.darwinConfigurations or {}; cfgs = darwin // nixos; "

// deployRsExpr binds, inside evalExpr's let, what skiff reads of a
// deploy-rs flake (outputs.deploy): drNodes, its nodes, and drOf NAME, the
// settings of node NAME's system profile as deploy-rs merges them (deploy,
// then the node, then profiles.system; each level wins over the one
// before), with the names of the node's profiles. Only the settings skiff
// knows are read: a profile's path (deploy-rs's activation wrapper around
// the system) is never evaluated, the system comes from the configuration
// of the same name.
const deployRsExpr = "drAll = if builtins.isAttrs (flake.deploy or null) then flake.deploy else {}; " +
	"drNodes = if builtins.isAttrs (drAll.nodes or null) then drAll.nodes else {}; " +
	"drKnown = builtins.listToAttrs (map (k: { name = k; value = null; }) [ \"hostname\" \"sshUser\" \"user\" \"sshOpts\" \"magicRollback\" \"confirmTimeout\" " +
	"\"remoteBuild\" \"sudo\" \"profilePath\" \"autoRollback\" \"interactiveSudo\" ]); " +
	"drPick = s: if builtins.isAttrs s then builtins.intersectAttrs drKnown s else {}; " +
	"drHasSystem = name: let node = builtins.getAttr name drNodes; in builtins.isAttrs node && builtins.isAttrs (node.profiles or null) && node.profiles ? system; " +
	"drOf = name: let node = builtins.getAttr name drNodes; ps = if builtins.isAttrs node && builtins.isAttrs (node.profiles or null) then node.profiles else {}; " +
	"in drPick drAll // drPick node // drPick (ps.system or null) // { profiles = builtins.attrNames ps; }; "

// evalExpr selects configurations of nixosConfigurations and
// darwinConfigurations (either may be missing) and projects what skiff
// needs, so the whole fleet is evaluated by one nix eval. The selectors are
// validated (ParseSelectors) and encoded as JSON, which is also a Nix
// string. Tags are evaluated only when a selector asks for one.
func evalExpr(sels []Selector) string {
	js := []byte("null")
	if len(sels) > 0 {
		js, _ = json.Marshal(sels)
	}
	return "let flake = builtins.getFlake (builtins.getEnv \"" + FlakeEnv + "\"); " +
		configsExpr +
		"sels = builtins.fromJSON ''" + string(js) + "''; " +
		"names = builtins.attrNames cfgs; " +
		"tagsOf = n: let t = ((builtins.getAttr n cfgs).config.deployment or {}).tags or []; in if builtins.isList t then t else []; " +
		"matches = n: s: if s.kind == \"name\" then n == s.value else if s.kind == \"glob\" then builtins.match s.regex n != null else builtins.elem s.value (tagsOf n); " +
		"pick = if sels == null then names else builtins.filter (n: builtins.any (matches n) sels) names; " +
		"hasTags = sels != null && builtins.any (s: s.kind == \"tag\") sels; " +
		deployRsExpr +
		keyFilesExpr +
		// Each host is evaluated under an error context naming its
		// attribute, which evalError reads back from the trace; its
		// values are forced inside it (all strings, cheap).
		"one = name: let cfg = builtins.getAttr name cfgs; kind = if builtins.hasAttr name nixos then \"nixos\" else \"darwin\"; " +
		"from = if builtins.hasAttr name own || kind == \"darwin\" then \"${kind}Configurations\" else \"colmenaHive.nodes\"; " +
		"in builtins.addErrorContext \"" + contextMark + "${from}.${name}\" (" +
		"if !(cfg ? config.system.build.toplevel) then { inherit kind from; notSystem = true; } else " +
		"let c = cfg.config; p = c.nixpkgs or {}; t = c.system.build.toplevel; r = { " +
		"inherit kind from; deployment = builtins.addErrorContext \"" + contextMark + deploymentMark + "${from}.${name}\" (builtins.toJSON (keyFilesAsStrings (c.deployment or {}))); drvPath = t.drvPath; out = t.outPath; buildSystem = t.system or null; " +
		"deployRs = if builtins.hasAttr name drNodes then builtins.addErrorContext \"" + contextMark + deployRsMark + "deploy.nodes.${name}\" (builtins.toJSON (drOf name)) else null; " +
		"system = (p.hostPlatform or {}).system or p.system or null; }; in builtins.deepSeq r r); " +
		"in { inherit names; deployRsOnly = builtins.filter (n: !(builtins.hasAttr n cfgs) && drHasSystem n) (builtins.attrNames drNodes); rawHive = flake ? colmena && !(flake ? colmenaHive); allowApplyAll = ((flake.colmenaHive or {}).meta or {}).allowApplyAll or null; both = builtins.filter (n: builtins.hasAttr n darwin) (builtins.attrNames nixos); " +
		"tags = if hasTags then builtins.listToAttrs (map (n: { name = n; value = tagsOf n; }) names) else {}; " +
		"hosts = builtins.listToAttrs (map (n: { name = n; value = one n; }) pick); }"
}

// Evaluate evaluates the hosts of the flake chosen by selectors (names,
// globs such as web*, tags such as @db; see ParseSelectors) with one nix
// eval. No selector selects every host. A selector that matches no host is
// a usage error.
func Evaluate(ctx context.Context, n *nix.Nix, ref Ref, selectors []string) ([]Host, error) {
	return evaluate(ctx, n, ref, selectors, false)
}

// EvaluateToDeploy is Evaluate for a deploy: a colmena hive that allows
// no deploy without a selection (colmenaHive.meta.allowApplyAll = false,
// against deploying to the whole fleet by mistake) refuses one that names
// no host, as colmena apply does.
func EvaluateToDeploy(ctx context.Context, n *nix.Nix, ref Ref, selectors []string) ([]Host, error) {
	return evaluate(ctx, n, ref, selectors, true)
}

func evaluate(ctx context.Context, n *nix.Nix, ref Ref, selectors []string, deploy bool) ([]Host, error) {
	sels, err := ParseSelectors(selectors)
	if err != nil {
		return nil, err
	}
	var res evalResult
	if err := n.EvalExprJSON(ctx, evalExpr(sels), []string{FlakeEnv + "=" + ref.URL}, &res); err != nil {
		return nil, evalError(err, ref)
	}
	if deploy && len(sels) == 0 && res.AllowApplyAll != nil && !*res.AllowApplyAll {
		return nil, fault.New("", fault.Usage, "name the hosts to deploy: HOST, GLOB or @TAG (the flake's colmenaHive.meta.allowApplyAll is false)",
			"the flake allows no deploy to every host at once")
	}
	sort.Strings(res.Names)
	if len(res.Names) == 0 {
		hint := "define nixosConfigurations.NAME (or darwinConfigurations.NAME) in the flake"
		if len(res.DeployRsOnly) > 0 {
			hint = fmt.Sprintf("skiff deploys a deploy-rs node (deploy.nodes.NAME) with the configuration of the same name: define nixosConfigurations.%s (the one its profiles.system.path activates)", res.DeployRsOnly[0])
		}
		if res.RawHive {
			hint = "the flake has a colmena hive (outputs.colmena): add colmena's evaluation of it, \"colmenaHive = colmena.lib.makeHive self.colmena;\" (colmena 0.5), to its outputs, and skiff deploys its nodes; or " + hint
		}
		return nil, fault.New("", fault.Usage, hint, "the flake %s defines no hosts", ref.URL)
	}
	if len(res.Both) > 0 {
		return nil, fault.New("", fault.Usage, "give each host one configuration: rename one of them",
			"the flake defines %s both in nixosConfigurations and in darwinConfigurations", strings.Join(res.Both, ", "))
	}
	if len(sels) == 0 && len(res.DeployRsOnly) > 0 {
		sort.Strings(res.DeployRsOnly)
		n := res.DeployRsOnly[0]
		return nil, fault.New("", fault.Usage, fmt.Sprintf("skiff deploys a deploy-rs node with the configuration of its name: name the node as the nixosConfigurations entry its profiles.system.path activates (or define nixosConfigurations.%s), or select the hosts to work on", n),
			"deploy.nodes.%s has a system profile and no configuration of its name in the flake", strings.Join(res.DeployRsOnly, ", deploy.nodes."))
	}
	if err := checkMatched(sels, res); err != nil {
		return nil, err
	}
	var hosts []Host
	var localUser string // looked up for the first deploy-rs node
	for _, name := range res.Names {
		raw, ok := res.Hosts[name]
		if !ok {
			continue
		}
		if !ValidName(name) {
			return nil, fault.New("", fault.Usage, "rename the configuration: letters, digits, '_', '.' and '-'",
				"the flake defines a host with an invalid name %q", name)
		}
		var eh evalHost
		if err := json.Unmarshal(raw, &eh); err != nil {
			return nil, fmt.Errorf("evaluate %s: %w", name, err)
		}
		h := Host{Name: name, Kind: KindNixOS, Attr: attrOf(eh.From, name), DrvPath: eh.DrvPath, OutPath: eh.OutPath}
		if eh.Kind == KindDarwin {
			h.Kind = KindDarwin
		}
		if eh.System != nil {
			h.System = *eh.System
		}
		if eh.Build != nil {
			h.BuildSystem = *eh.Build
		}
		if eh.NotSystem {
			return nil, fault.New(name, fault.Eval,
				fmt.Sprintf("define %s with nixpkgs.lib.nixosSystem (or nix-darwin's darwinSystem); see nix's own error with \"%s\"", h.Attr, evalCommand(ref, h.Attr+toplevelAttr)),
				"%s is not a NixOS system: it has no config.system.build.toplevel", h.Attr)
		}
		if h.Deployment, err = decodeSettings(name, json.RawMessage(eh.Deployment)); err != nil {
			return nil, err
		}
		if err := takeSSHOptions(&h); err != nil {
			return nil, err
		}
		if eh.DeployRs != nil {
			d, err := decodeDeployRs(name, json.RawMessage(*eh.DeployRs))
			if err != nil {
				return nil, err
			}
			if localUser == "" {
				localUser = localUserName()
			}
			if err := applyDeployRs(name, d, &h.Deployment, localUser); err != nil {
				return nil, err
			}
		}
		if err := h.check(); err != nil {
			return nil, err
		}
		// colmena's module always gives a hive node's targetHost (its
		// name by default) and targetUser ("root"): none is an explicit
		// null.
		h.LocalOnly = eh.From == "colmenaHive.nodes" && h.Deployment.TargetHost == ""
		h.UserFromSSH = eh.From == "colmenaHive.nodes" && h.Deployment.TargetUser == ""
		if h.Deployment.BuildHost == LocalBuildHost {
			h.Deployment.BuildHost = "" // this machine, as nixos-rebuild takes it
		}
		h.Deployment.Keys = keyFilesInFlake(h.Deployment.Keys, ref)
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// OverSSH splits the selected hosts into those reached over ssh and those
// deployed only on themselves (LocalOnly: colmena's targetHost = null),
// which colmena apply leaves out too. A local-only host named on the
// command line, or a selection of local-only hosts only, is refused.
func OverSSH(hosts []Host, selectors []string) (remote, local []Host, err error) {
	sels, err := ParseSelectors(selectors)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range hosts {
		if !h.LocalOnly {
			remote = append(remote, h)
			continue
		}
		hint := fmt.Sprintf("deploy it on the host itself with \"skiff deploy --local %s\", or give it a deployment.targetHost", h.Name)
		for _, s := range sels {
			if s.Kind == "name" && s.Value == h.Name {
				return nil, nil, fault.New(h.Name, fault.Usage, hint,
					"deployment.targetHost is null: this colmena node is deployed only on itself, not over ssh")
			}
		}
		local = append(local, h)
	}
	if len(remote) == 0 && len(local) > 0 {
		return nil, nil, fault.New("", fault.Usage, "deploy each on itself with \"skiff deploy --local NAME\", or give them a deployment.targetHost",
			"every selected host has deployment.targetHost = null (deployed only on itself): %s", strings.Join(hostNames(local), ", "))
	}
	return remote, local, nil
}

// hostNames are the hosts' names.
func hostNames(hosts []Host) []string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return names
}

// checkMatched refuses selectors that match no host, naming what exists.
func checkMatched(sels []Selector, res evalResult) error {
	known := "known hosts: " + strings.Join(res.Names, ", ")
	for _, s := range sels {
		switch s.Kind {
		case "name":
			if _, ok := res.Hosts[s.Value]; !ok {
				if slices.Contains(res.DeployRsOnly, s.Value) {
					return fault.New("", fault.Usage, fmt.Sprintf("skiff deploys a deploy-rs node with the configuration of the same name: define nixosConfigurations.%s (the system its profiles.system.path activates); %s", s.Value, known),
						"deploy.nodes.%s has no configuration of its name in the flake", s.Value)
				}
				return fault.New("", fault.Usage, known, "unknown host %q in the flake", s.Value)
			}
		case "glob":
			re := regexp.MustCompile("^(" + s.Regex + ")$")
			found := false
			for _, n := range res.Names {
				found = found || re.MatchString(n)
			}
			if !found {
				return fault.New("", fault.Usage, known, "no host matches %q", s.Value)
			}
		case "tag":
			found := false
			all := map[string]bool{}
			for _, host := range res.Names {
				raw, ok := res.Tags[host]
				if !ok {
					continue
				}
				var tags []string
				if err := decodeField(host, "deployment.tags", raw, &tags, tList); err != nil {
					return err
				}
				for _, t := range tags {
					all[t] = true
					found = found || t == s.Value
				}
			}
			if !found {
				var list []string
				for t := range all {
					list = append(list, "@"+t)
				}
				sort.Strings(list)
				hint := "no host has any tag; set deployment.tags in the flake"
				if len(list) > 0 {
					hint = "known tags: " + strings.Join(list, ", ")
				}
				return fault.New("", fault.Usage, hint, "no host has tag @%s", s.Value)
			}
		}
	}
	return nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9_.:%\[\]-]+$`)

// buildHostRE is what --build-host and deployment.buildHost accept:
// [USER@]HOST, never option-like.
var buildHostRE = regexp.MustCompile(`^([a-z_][a-z0-9_.-]*@)?[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]*$`)

// LocalBuildHost, as a build host (--build-host, deployment.buildHost),
// means this machine, as nixos-rebuild --build-host localhost does.
const LocalBuildHost = "localhost"

// ValidBuildHost reports whether s can be a build host ([USER@]HOST).
func ValidBuildHost(s string) bool { return buildHostRE.MatchString(s) }

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*\$?$`)

// ValidUser reports whether s can be a login user name.
func ValidUser(s string) bool { return userRE.MatchString(s) }

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
	if d.BuildHost != "" && !buildHostRE.MatchString(d.BuildHost) {
		return fault.New(h.Name, fault.Usage, "deployment.buildHost must be a host name or an address, optionally with USER@",
			"invalid deployment.buildHost %q", d.BuildHost)
	}
	if d.BuildOnTarget && d.BuildHost != "" {
		return fault.New(h.Name, fault.Usage, "set one of them: buildOnTarget builds on the host itself, buildHost on another machine",
			"deployment.buildOnTarget and deployment.buildHost are both set")
	}
	if c := d.PrivilegeEscalationCommand; len(c) > 0 && c[0] != "sudo" {
		return fault.New(h.Name, fault.Usage, "skiff gains root through sudo only (sudo -n, or --ask-sudo-password): remove deployment.privilegeEscalationCommand, or make it [ \"sudo\" ... ], and let the login use sudo",
			"deployment.privilegeEscalationCommand %q is not sudo", strings.Join(c, " "))
	}
	if d.TargetUser != "" && !userRE.MatchString(d.TargetUser) {
		return fault.New(h.Name, fault.Usage, "deployment.targetUser must be a user name",
			"invalid deployment.targetUser %q", d.TargetUser)
	}
	if err := h.checkHealth(); err != nil {
		return err
	}
	for attr, k := range d.Keys {
		if err := k.Check(h.Name, attr); err != nil {
			return err
		}
	}
	if h.DrvPath == "" || h.OutPath == "" {
		return errors.New(h.Name + ": configuration has no system.build.toplevel")
	}
	return nil
}

// checkHealth refuses health checks that cannot run: empty commands, URLs
// that are not http(s), a timeout out of range.
func (h Host) checkHealth() error {
	hc := h.Deployment.HealthChecks
	hint := "deployment.healthChecks = { commands = [ \"systemctl is-active nginx\" ]; urls = [ \"https://web1.example.com/health\" ]; timeout = 10; }"
	for _, c := range hc.Commands {
		if strings.TrimSpace(c) == "" {
			return fault.New(h.Name, fault.Usage, hint, "empty command in deployment.healthChecks.commands")
		}
	}
	for _, u := range hc.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fault.New(h.Name, fault.Usage, hint, "invalid URL %q in deployment.healthChecks.urls (want http:// or https://)", u)
		}
	}
	if hc.Timeout < 0 || hc.Timeout > 3600 {
		return fault.New(h.Name, fault.Usage, hint, "invalid deployment.healthChecks.timeout %d (seconds, 1 to 3600)", hc.Timeout)
	}
	return nil
}

var storeSrcRE = regexp.MustCompile(`/nix/store/[a-z0-9]{32}-source`)

// contextMark starts the error context each host is evaluated under:
// "skiff: evaluating nixosConfigurations.web1".
const contextMark = "skiff: evaluating "

// deploymentMark follows contextMark when the deployment settings are
// being evaluated.
const deploymentMark = "the deployment settings of "

// deployRsMark follows contextMark when a deploy-rs node's settings are
// being evaluated.
const deployRsMark = "the deploy-rs settings of "

// contextRE finds the contexts in nix's trace.
var contextRE = regexp.MustCompile(`(?m)` + regexp.QuoteMeta(contextMark) + `(` + deploymentMark + `|` + deployRsMark + `)?(nixosConfigurations|darwinConfigurations|colmenaHive\.nodes|deploy\.nodes)\.([A-Za-z0-9_.-]+)\s*$`)

// toplevelAttr is the attribute of a configuration that skiff builds.
const toplevelAttr = ".config.system.build.toplevel"

// attrOf is the flake attribute of configuration name in the flake
// output from (nixosConfigurations, darwinConfigurations or
// colmenaHive.nodes; empty means nixosConfigurations).
func attrOf(from, name string) string {
	if strings.Contains(name, ".") {
		name = `"` + name + `"`
	}
	if from == "" {
		from = "nixosConfigurations"
	}
	return from + "." + name
}

// evalCommand is a nix eval of attr in the flake, as a hint prints it: it
// runs as printed on Nix 2.8 (which needs the experimental features) and
// newer, and shows nix's own error.
func evalCommand(ref Ref, attr string) string {
	argv := append([]string{"nix"}, nix.Features...)
	return command.Join(append(argv, "eval", ref.URL+"#"+attr))
}

// evalError shortens nix's message to its error lines and the locations in
// the user's files (never those of skiff's own expression), naming the
// host whose evaluation failed when the trace tells.
func evalError(err error, ref Ref) error {
	var ce *command.Error
	if !errors.As(err, &ce) {
		return fault.Wrap(err, "", fault.Eval, "run nix eval by hand to see the whole message", "evaluate flake %s: %v", ref.URL, err)
	}
	text := ce.Stderr
	if ref.Dir != "" {
		text = storeSrcRE.ReplaceAllString(text, ref.Dir)
	}
	// Nix 2.8 prints "error: MESSAGE" first, then the trace; newer
	// releases print "error:" alone, the trace, then the message: the
	// last "error:" line that says something is the message.
	var errLine string
	var locs []string
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "error:") && strings.TrimSpace(strings.TrimPrefix(t, "error:")) != "":
			errLine = t
		case strings.HasPrefix(t, "at ") && !strings.Contains(t, "«string»") && len(locs) < 2:
			locs = append(locs, strings.TrimSuffix(t, ":"))
		}
	}
	var keep []string
	if errLine != "" {
		keep = append(keep, errLine)
	}
	msg := strings.Join(append(keep, locs...), "; ")
	if msg == "" {
		msg = command.Tail(text, 3)
	}
	if len(msg) > 600 {
		msg = msg[:600] + "..."
	}
	// The deployment settings' context lies inside the host's: when it
	// is in the trace at all, the error happened in them. (Nix releases
	// print traces in opposite orders.)
	var m []string
	for _, c := range contextRE.FindAllStringSubmatch(text, -1) {
		if m == nil || c[1] != "" {
			m = c
		}
	}
	if m != nil && ValidName(m[3]) {
		name := m[3]
		attr := attrOf(m[2], name) + toplevelAttr
		switch {
		case m[1] == deployRsMark:
			attr = attrOf(m[2], name)
		case m[1] != "":
			attr = attrOf(m[2], name) + ".config.deployment"
		}
		return fault.Wrap(err, name, fault.Eval,
			fmt.Sprintf("fix the configuration; see nix's own error with \"%s\" (add --show-trace for the whole trace)", evalCommand(ref, attr)),
			"cannot evaluate %s: %s", attr, msg)
	}
	return fault.Wrap(err, "", fault.Eval,
		fmt.Sprintf("fix the flake, then check it with \"%s --apply builtins.attrNames\"", evalCommand(ref, "nixosConfigurations")),
		"cannot evaluate flake %s: %s", ref.URL, msg)
}
