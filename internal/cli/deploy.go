package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

type deployOptions struct {
	mode       string
	targetUser string
	targetHost string
	parallel   int
	force      bool
	canary     int
	failFast   bool
	json       bool
	askSudo    bool
	gc         bool
	gcKeep     int
	buildHost  string
	substitute bool
	cache      string
	local      bool
	// installBootloader: nixos-rebuild's --install-bootloader.
	installBootloader bool
	plan              planOptions
	reboot            rebootOptions
}

func newDeploy(g *globals) *cobra.Command {
	var o deployOptions
	var safety activate.Options
	c := &cobra.Command{
		Use:   "deploy [HOST|GLOB|@TAG...]",
		Short: "Build the hosts' systems locally, copy them and activate them",
		Long: `Deploy builds nixosConfigurations.HOST.config.system.build.toplevel locally,
copies the store paths each host lacks over SSH and runs
switch-to-configuration MODE there. Hosts are chosen by name (web1), glob
(web*) and tag (@db), as arguments or with --on web1,@db; without any, every
host of the flake is deployed. Hosts with deployment.critical = true go last,
after every other host succeeded.

With --local [NAME], the configuration NAME (default: this machine's host
name) is deployed to the machine skiff runs on: no ssh and nothing to copy,
privileged steps through sudo when skiff does not run as root, the same
supervisor, lock and rollback; the lockout proof is skipped.

nix-darwin hosts (darwinConfigurations.HOST) deploy in the same run: their
system profile gets the new generation, then activate-user (as the login
user, where the system has it) and activate (as root) run; switch only.
A host whose platform this machine cannot build is refused before the
build; --build-host (or deployment.buildHost) builds on another machine,
deployment.buildOnTarget on the host itself.

Modes (as nixos-rebuild):
  switch        new generation, boot default, activate now (default)
  boot          new generation and boot default; activate at next boot
  test          activate now; no generation, boot default unchanged
  dry-activate  print what activation would change; change nothing

` + exitCodeHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			givenSafety(cmd.Flags(), &safety)
			if !o.local {
				return runDeploy(cmd.Context(), g, o, safety, args)
			}
			name, err := localHost(args, cmd.Flags().Changed("on"), o)
			if err != nil {
				return err
			}
			if len(args) == 1 && !o.force {
				if err := anotherHostHere(cmd.Context(), g, name); err != nil {
					return err
				}
			}
			err = runDeploy(cmd.Context(), g, o, safety, []string{name})
			if fe, ok := fault.As(err); ok && len(args) == 0 && fe.Class == fault.Usage && fe.Host == "" {
				// The name came from the host name: say how to choose another.
				fe.Hint = strings.TrimPrefix(fe.Hint+"; ", "; ") + "name the configuration: \"skiff deploy --local NAME\""
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&o.mode, "mode", "switch", "`MODE`: switch, boot, test or dry-activate")
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root); a user other than root uses sudo -n")
	addTargetHostFlag(f, &o.targetHost)
	addRemoteSudoFlags(f)
	f.IntVarP(&o.parallel, "parallel", "p", 10, "deploy at most `N` hosts at once")
	f.BoolVar(&o.force, "force", false, "activate even hosts that already run the new system; with --local NAME, deploy another host's configuration to a machine the flake defines as a host of its own")
	f.IntVar(&o.canary, "canary", 0, "deploy `N` hosts first and stop if any of them fails")
	f.BoolVar(&o.failFast, "fail-fast", false, "once a host fails, deploy no more hosts")
	f.BoolVar(&o.json, "json", false, "print JSON Lines on stdout: an event per phase change, then a summary")
	f.BoolVar(&o.askSudo, "ask-sudo-password", false, "ask once for the sudo password of the login user and give it to sudo on each host whose sudo asks for it")
	f.BoolVar(&o.gc, "gc", false, "when a host lacks room for the copy, delete old generations and collect garbage there first")
	f.IntVar(&o.gcKeep, "gc-keep", fleet.DefaultGCKeep, "with --gc: keep the newest `N` generations")
	f.BoolVar(&o.substitute, "use-substitutes", false, "let each host fetch what it can from its own substituters (nix copy --substitute-on-destination)")
	f.StringVar(&o.cache, "cache", "", "push every system once to the binary cache `URL` (e.g. file:///srv/cache?secret-key=/etc/nix/cache.sec), then copy with --use-substitutes; the hosts must have the cache among their substituters")
	f.StringVar(&o.buildHost, "build-host", "", "build every host's system on `[USER@]HOST` (over ssh) instead of here; overrides deployment.buildHost")
	f.BoolVar(&o.installBootloader, "install-bootloader", false, "(re)install each NixOS host's boot loader as the new system becomes its boot default (switch, boot), as nixos-rebuild --install-bootloader does; hosts already running the system are activated again")
	f.BoolVar(&o.local, "local", false, "deploy nixosConfigurations.NAME (or darwinConfigurations.NAME) to this machine, without ssh (sudo when not root); NAME defaults to this machine's host name")
	addRebootFlags(f, &o.reboot)
	addPlanFlags(f, &o.plan)
	addSafetyFlags(f, &safety)
	return withOn(c)
}

func runDeploy(ctx context.Context, g *globals, o deployOptions, safety activate.Options, hosts []string) error {
	mode, err := fleet.ParseMode(o.mode)
	if err != nil {
		return usageError{err}
	}
	if err := checkSafety(safety); err != nil {
		return err
	}
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	if err := checkTargetHost(o.targetHost); err != nil {
		return err
	}
	if o.gcKeep < 1 {
		return usageError{errorf("--gc-keep must be at least 1")}
	}
	if o.canary < 0 {
		return usageError{errorf("--canary must not be negative")}
	}
	if o.cache != "" && (strings.HasPrefix(o.cache, "-") || !strings.Contains(o.cache, "://")) {
		return usageError{errorf("invalid --cache %q (want a store URL such as file:///srv/cache or s3://bucket)", o.cache)}
	}
	if o.buildHost != "" && !flake.ValidBuildHost(o.buildHost) {
		return usageError{errorf("invalid --build-host %q (want HOST or USER@HOST)", o.buildHost)}
	}
	if err := o.reboot.check(mode); err != nil {
		return err
	}
	if o.installBootloader && !mode.MakesGeneration() {
		return fault.New("", fault.Usage, "install the boot loader with --mode switch (the default) or --mode boot",
			"--install-bootloader and --mode %s do not go together: %s makes no boot default", mode, mode)
	}
	rc, err := g.reach(hosts)
	if err != nil {
		return err
	}
	defer rc.close()
	ref, sshOpts := rc.ref, rc.ssh
	var password string
	if o.askSudo {
		if password, err = readSudoPassword(g); err != nil {
			return err
		}
	}
	// The password leaves skiff towards sudo only (internal/remote/sudo.go);
	// red keeps it out of everything else this command shows or records.
	red := newRedactor(password)
	screen := g // the live view draws on the terminal itself, from redacted events
	g, flush := red.globals(g)
	defer flush()
	beforeDeploy, err := o.plan.hook(g, o.parallel)
	if err != nil {
		return err
	}
	run := g.runner()
	out := screen.output(o.json)
	start := time.Now()
	rev := startRevision(g, ref)
	results, err := fleet.Deploy(ctx, fleet.Options{
		Flake:             ref,
		Hosts:             hosts,
		Mode:              mode,
		User:              o.targetUser,
		TargetHost:        o.targetHost,
		SSH:               sshOpts,
		Parallel:          o.parallel,
		Force:             o.force || o.installBootloader,
		Canary:            o.canary,
		FailFast:          o.failFast,
		GC:                o.gc,
		GCKeep:            o.gcKeep,
		BuildHost:         o.buildHost,
		UseSubstitutes:    o.substitute,
		Cache:             o.cache,
		SudoPassword:      password,
		Runner:            run,
		Nix:               g.nix(run),
		Reporter:          red.Reporter(out.reporter),
		BeforeDeploy:      beforeDeploy,
		Safety:            safety,
		Local:             o.local,
		Reboot:            o.reboot.reboot,
		InstallBootloader: o.installBootloader,
		RebootTimeout:     o.reboot.timeout,
		Targets:           newTargetCache(ref),
	})
	out.close()
	results, err = red.Results(results), red.Error(err)
	if err != nil {
		return err
	}
	code := exitCodeOf(results)
	if ctx.Err() != nil {
		code = ExitInterrupted
	}
	out.summary(results, code)
	if len(results) > 0 { // a --plan that deployed nothing is not recorded
		recordRun(g, start, "deploy", ref, rev, string(mode), results, code)
	}
	for _, r := range results {
		if r.Err != nil {
			printError(g.stderr, r.Err)
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}

// exitCodeOf maps host results to the exit code: 4 when a host was rolled
// back, else 3 when a host failed, was skipped or interrupted, else 0. An
// interrupted run exits 130 whatever its hosts' results (runDeploy).
func exitCodeOf(results []fleet.Result) int {
	code := ExitOK
	for _, r := range results {
		switch {
		case r.Status == fleet.RolledBack:
			code = ExitRolledBack
		case (r.Status == fleet.Failed || r.Status == fleet.Skipped || r.Status == fleet.Interrupted) && code != ExitRolledBack:
			code = ExitHostsFailed
		}
	}
	return code
}

// anotherHostHere refuses deploy --local NAME on a machine the flake
// defines as another of its hosts (this machine's host name): it would
// become NAME, with NAME's users, keys and network, and with no ssh to
// lose no lockout proof would catch it. --force deploys it anyway. A
// machine the flake does not name (a fresh install is "nixos") may become
// any host. The check costs one cheap evaluation of the names, and only
// when NAME is given and is not this machine's.
func anotherHostHere(ctx context.Context, g *globals, name string) error {
	here, err := shortHostname()
	if err != nil {
		return nil
	}
	if here == name || !flake.ValidName(here) {
		return nil
	}
	ref, err := flake.ParseRef(g.flake)
	if err != nil {
		return nil // the deploy says what is wrong with it
	}
	names, err := flake.Names(ctx, g.nix(g.runner()), ref)
	if err != nil {
		return nil // so does the deploy's evaluation
	}
	for _, n := range names {
		if n.Name == here {
			return fault.New("", fault.Usage,
				fmt.Sprintf("deploy %s over ssh (\"skiff deploy %s\") and this machine with \"skiff deploy --local\"; to turn this machine into %s, add --force", name, name, name),
				"this machine is %s, which the flake defines as a host of its own: deploy --local %s would make it %s", here, name, name)
		}
	}
	return nil
}

// shortHostname is this machine's host name up to its first dot: the
// configuration name deploy --local takes for it.
func shortHostname() (string, error) {
	name, err := os.Hostname()
	name, _, _ = strings.Cut(name, ".")
	return name, err
}

// localHost is the one configuration deploy --local deploys to this
// machine: the argument, else this machine's host name up to its first
// dot. Options that choose other hosts or another login are refused before
// anything runs.
func localHost(args []string, on bool, o deployOptions) (string, error) {
	const hint = "deploy --local deploys one configuration to this machine: \"skiff deploy --local [NAME]\""
	switch {
	case on:
		return "", fault.New("", fault.Usage, hint, "--local takes no --on: it deploys to this machine only")
	case len(args) > 1:
		return "", fault.New("", fault.Usage, hint, "--local takes at most one configuration name, got %d", len(args))
	case o.buildHost != "":
		return "", fault.New("", fault.Usage, hint+"; it builds here", "--local and --build-host do not go together")
	case o.targetHost != "":
		return "", fault.New("", fault.Usage, hint+"; it uses no ssh", "--local and --target-host do not go together")
	case o.targetUser != "":
		return "", fault.New("", fault.Usage, "run skiff as the user who should deploy (root, or a user who may use sudo)",
			"--local and --target-user do not go together: there is no login, skiff runs as the current user")
	case o.reboot.reboot:
		return "", fault.New("", fault.Usage, "deploy with --mode boot, then reboot this machine yourself",
			"--local and --reboot do not go together: skiff would reboot the machine it runs on and could not check it came back")
	}
	if len(args) == 1 {
		if !flake.ValidName(args[0]) {
			return "", fault.New("", fault.Usage, hint, "--local takes a configuration name, not %q", args[0])
		}
		return args[0], nil
	}
	name, err := shortHostname()
	if err != nil {
		return "", fault.New("", fault.Usage, "name the configuration: \"skiff deploy --local NAME\"", "cannot read this machine's host name: %v", err)
	}
	if !flake.ValidName(name) {
		return "", fault.New("", fault.Usage, "name the configuration: \"skiff deploy --local NAME\"", "this machine's host name %q is not a configuration name", name)
	}
	return name, nil
}
