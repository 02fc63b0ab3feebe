// Package benchlab is the setup the benchmarks share: a lab of real sshd hosts,
// each behind a delay proxy (toxiproxy, in this process), an ssh_config that
// reaches every host through its proxy, a skiff binary built from this tree, the
// example flake at a given generation, and the floor script: what
// `nixos-rebuild switch --flake .#HOST --target-host root@HOST` does.
//
// Every command is measured under a reaper (see Measure): wall time, and the CPU
// of the command and all its descendants, ssh masters included.
package benchlab

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/skiffdeploy/skiff/internal/lab"
)

//go:embed floor.sh
var floorScript []byte

// The floor of skiff rollback (bench/commands); skiff diff's is floor.sh's
// dry-activate.
//
//go:embed floor-rollback.sh
var floorRollbackScript []byte

// Bench is a running lab behind delay proxies.
type Bench struct {
	Lab       *lab.Lab
	Dir       string // scratch directory, removed by Stop
	Skiff     string // the skiff binary built from this tree
	SSHConfig string // every lab host through its proxy
	Kex       string // the key exchange the ssh_config names; "" for ssh's default
	BasePaths int    // small store paths in every system's closure (lib.nix's basePaths)
	proxies   []*toxiproxy.Proxy
	runs      int
}

// Start builds skiff, starts a lab of hosts and a proxy in front of each host's
// sshd, with no delay. It runs from the repository root or from bench/
// (its own module: "go run -C bench ./onehost" runs there). kex, unless
// empty, is the key exchange that the ssh_config names for every host
// (KexAlgorithms), for skiff and the floor alike: what an ssh login costs
// decides much of the figures (see KexFlag).
func Start(ctx context.Context, hosts []lab.HostSpec, kex string) (*Bench, error) {
	if strings.ContainsAny(kex, " \t\n\"#") {
		return nil, fmt.Errorf("invalid key exchange %q", kex)
	}
	if err := lab.Available(); err != nil {
		return nil, err
	}
	if _, err := os.Stat("examples/fleet/lib.nix"); err != nil {
		if _, err2 := os.Stat("../examples/fleet/lib.nix"); err2 != nil || os.Chdir("..") != nil {
			return nil, fmt.Errorf("run from the repository root or bench/: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "skiff-bench-")
	if err != nil {
		return nil, err
	}
	b := &Bench{Dir: dir, Skiff: filepath.Join(dir, "skiff"), SSHConfig: filepath.Join(dir, "ssh_config"), Kex: kex}
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.Skiff, "./cmd/skiff").CombinedOutput(); err != nil {
		b.Stop()
		return nil, fmt.Errorf("build skiff: %w\n%s", err, out)
	}
	for name, script := range map[string][]byte{"floor.sh": floorScript, "floor-rollback.sh": floorRollbackScript} {
		if err := os.WriteFile(filepath.Join(dir, name), script, 0o755); err != nil {
			b.Stop()
			return nil, err
		}
	}
	b.Lab, err = lab.Start(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Hosts: hosts})
	if err != nil {
		b.Stop()
		return nil, err
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	var config strings.Builder
	config.WriteString("# skiff bench: every lab host through its delay proxy\n")
	for _, h := range b.Lab.Hosts() {
		p := toxiproxy.NewProxy(server, h.Name, "127.0.0.1:0", h.Addr+":22")
		if err := p.Start(); err != nil {
			b.Stop()
			return nil, fmt.Errorf("proxy for %s: %w", h.Name, err)
		}
		b.proxies = append(b.proxies, p)
		host, port, _ := strings.Cut(p.Listen, ":")
		// The host key is looked up under the host's own address, as without
		// the proxy: known_hosts is the lab's, checking stays on.
		fmt.Fprintf(&config, "\nHost %s\n  HostName %s\n  Port %s\n  HostKeyAlias %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n",
			h.Name, host, port, h.Addr, b.Lab.IdentityFile(), b.Lab.KnownHosts())
		if kex != "" {
			fmt.Fprintf(&config, "  KexAlgorithms %s\n", kex)
		}
	}
	if err := os.WriteFile(b.SSHConfig, []byte(config.String()), 0o644); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// Stop ends the proxies and the lab and removes the scratch directory.
func (b *Bench) Stop() {
	for _, p := range b.proxies {
		p.Stop()
	}
	if b.Lab != nil {
		_ = b.Lab.Stop()
	}
	os.RemoveAll(b.Dir)
}

// SetDelay sets the round trip that every proxy adds: half of it each way.
func (b *Bench) SetDelay(ctx context.Context, rtt time.Duration) error {
	for _, p := range b.proxies {
		p.Toxics.ResetToxics(ctx)
		if rtt <= 0 {
			continue
		}
		for _, stream := range []string{"upstream", "downstream"} {
			toxic := fmt.Sprintf(`{"name":"delay_%s","type":"latency","stream":%q,"attributes":{"latency":%d}}`,
				stream, stream, (rtt / 2).Milliseconds())
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
				return fmt.Errorf("delay for %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// Main is every bench's main. A reaper (see Reaper) does its work and
// exits. Otherwise Main adds two flags to those the caller defined and
// parses them all: -delay, the round trips to measure at (comma
// separated, by default delays; see ParseDelays), and -kex, the key
// exchange of every ssh login, skiff's and the floor's. It then calls run
// with them; an error goes to standard error after the bench's name, and
// the exit code is 1.
//
// A login's CPU is mostly its key exchange: OpenSSH 9.0 to 9.9 default to
// sntrup761x25519-sha512, which costs about 0.1 s of CPU on each side on
// this machine's OpenSSH 9.2; OpenSSH 10.0 and later default to
// mlkem768x25519-sha256, which costs about what curve25519-sha256 does.
// "-kex curve25519-sha256" measures with that cost on an OpenSSH that
// lacks mlkem768x25519.
func Main(name, delays string, run func(ctx context.Context, delays []time.Duration, kex string) error) {
	Reaper()
	list := flag.String("delay", delays, "round-trip delays to measure at, comma separated")
	kex := flag.String("kex", "", "key exchange of every ssh login, skiff's and the floor's (ssh_config KexAlgorithms; default: ssh's own)")
	flag.Parse()
	ds, err := ParseDelays(*list)
	if err == nil {
		err = run(context.Background(), ds, *kex)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// About says which key exchange the logins use, for a bench's header.
func (b *Bench) About() string {
	if b.Kex == "" {
		return "ssh logins with ssh's default key exchange (" + sshVersion() + ")"
	}
	return "ssh logins with KexAlgorithms " + b.Kex + " (" + sshVersion() + ")"
}

// sshVersion is the first words of ssh -V.
func sshVersion() string {
	out, err := exec.Command("ssh", "-V").CombinedOutput()
	if err != nil {
		return "ssh -V failed"
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "ssh -V said nothing"
	}
	return strings.TrimSuffix(f[0], ",")
}

// ParseDelays parses a comma-separated list of round trips ("0,50ms").
func ParseDelays(list string) ([]time.Duration, error) {
	var ds []time.Duration
	for _, s := range strings.Split(list, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("invalid delay %q", s)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// WriteFlake writes the example flake with the systems of hosts at generation gen
// (baseSize bytes of filler in the shared base path, and b.BasePaths small paths
// it references) and returns its directory:
// always the same one, rewritten, as a user edits a flake where it is.
func (b *Bench) WriteFlake(hosts []string, gen int, baseSize int64) (string, error) {
	dir := filepath.Join(b.Dir, "flake")
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.CopyFS(dir, os.DirFS("examples/fleet")); err != nil {
		return "", err
	}
	for _, f := range []string{"flake.lock", "generation", "overrides.nix"} {
		os.Remove(filepath.Join(dir, f))
	}
	var s strings.Builder
	s.WriteString("{\n  outputs = { self }: let lib = import ./lib.nix; in {\n    nixosConfigurations = {\n")
	for _, h := range hosts {
		fmt.Fprintf(&s, "      %s = lib.mkSystem { name = %q; generation = %d; baseSize = %d; basePaths = %d; };\n", h, h, gen, baseSize, b.BasePaths)
	}
	s.WriteString("    };\n  };\n}\n")
	return dir, os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(s.String()), 0o644)
}

// Build builds the hosts' systems of flake (untimed), so that the measured
// deploys find them in the store, as a rebuild after an edit finds most. It
// leaves Nix's evaluation cache cold: after an edit, nixos-rebuild evaluates.
func Build(ctx context.Context, flake string, hosts []string) error {
	args := []string{"--extra-experimental-features", "nix-command flakes", "--option", "substituters", "",
		"--option", "eval-cache", "false", "build", "--no-link", "--json"}
	for _, h := range hosts {
		args = append(args, flake+"#nixosConfigurations."+h+".config.system.build.toplevel")
	}
	out, err := exec.CommandContext(ctx, "nix", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w\n%s", err, ee.Stderr)
		}
		return fmt.Errorf("nix build: %w", err)
	}
	var res []struct{ Outputs map[string]string }
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(hosts) {
		return fmt.Errorf("nix build: unexpected output %s", out)
	}
	return nil
}

// Floor runs the floor script for host: nix build, then nix-copy-closure, nix-env
// --set and switch-to-configuration over one ControlMaster connection.
func (b *Bench) Floor(ctx context.Context, flake, host string) (Usage, error) {
	return b.FloorOf(ctx, "floor.sh", flake, host)
}

// FloorOf runs the floor script name (floor.sh, floor-rollback.sh) with
// the bench's ssh_config and a new directory for its ControlPath, then
// args.
func (b *Bench) FloorOf(ctx context.Context, name string, args ...string) (Usage, error) {
	b.runs++
	control := filepath.Join(b.Dir, fmt.Sprintf("c%d", b.runs))
	if err := os.Mkdir(control, 0o700); err != nil {
		return Usage{}, err
	}
	argv := append([]string{"/bin/sh", filepath.Join(b.Dir, name), b.SSHConfig, control}, args...)
	u, err := Measure(ctx, nil, argv...)
	if err == nil && u.ExitCode != 0 {
		err = fmt.Errorf("%s %s exited %d:\n%s", name, strings.Join(args, " "), u.ExitCode, u.Stderr)
	}
	return u, err
}

// Deploy runs skiff -x deploy with args (its trace is in Usage.Stderr).
func (b *Bench) Deploy(ctx context.Context, flake string, args ...string) (Usage, error) {
	return b.Run(ctx, flake, "deploy", args...)
}

// Run runs skiff -x COMMAND with args (its trace is in Usage.Stderr).
func (b *Bench) Run(ctx context.Context, flake, command string, args ...string) (Usage, error) {
	argv := append([]string{b.Skiff, "-x", "-F", b.SSHConfig, "--nix-option", "substituters=", "--flake", flake, command}, args...)
	u, err := Measure(ctx, []string{"SKIFF_HISTORY=" + filepath.Join(b.Dir, "history.db")}, argv...)
	if err == nil && u.ExitCode != 0 {
		err = fmt.Errorf("skiff %s %s exited %d:\n%s", command, strings.Join(args, " "), u.ExitCode, u.Stderr)
	}
	return u, err
}

// Handshake is the median time of n fresh `ssh HOST true` (a new connection each).
func (b *Bench) Handshake(ctx context.Context, host string, n int) (time.Duration, error) {
	var ds []time.Duration
	for range n {
		start := time.Now()
		out, err := exec.CommandContext(ctx, "ssh", "-F", b.SSHConfig, "-o", "ControlPath=none", "-o", "BatchMode=yes", "root@"+host, "true").CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("ssh %s true: %w\n%s", host, err, out)
		}
		ds = append(ds, time.Since(start))
	}
	return Median(ds), nil
}

// Logins counts the root logins that the hosts' sshd logs show so far.
func (b *Bench) Logins(hosts ...string) int {
	n := 0
	for _, h := range hosts {
		n += b.Lab.Host(h).Logins("root")
	}
	return n
}

// Trace counts the commands in skiff's -x trace.
type Trace struct {
	SSH    int // ssh invocations (remote commands and -O exit)
	Fresh  int // of which on a new connection (ControlPath=none)
	Copies int // copies of the closure: nix copy, or nix-store --import over ssh
	Evals  int // nix eval runs
}

// CountTrace counts the commands of a -x trace.
func CountTrace(stderr string) Trace {
	var t Trace
	for _, line := range strings.Split(stderr, "\n") {
		switch {
		case strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, "skiff-import"):
			t.Copies++ // the closure as one stream (nix-store --export here)
		case strings.HasPrefix(line, "+ ssh "):
			t.SSH++
			if strings.Contains(line, "ControlPath=none") {
				t.Fresh++
			}
		case strings.HasPrefix(line, "+ ") && (strings.Contains(line, " copy --to ") || strings.Contains(line, "nix-copy-closure")):
			t.Copies++
		case strings.HasPrefix(line, "+ ") && strings.Contains(line, " eval --json "):
			t.Evals++
		}
	}
	return t
}

// Median of ds (the upper one of an even count).
func Median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Ms formats d in milliseconds.
func Ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

// StartOneHost starts the one-host benches' lab (hosts floor, plain and
// skiff) and puts generation 1 of the example flake on each, untimed, with
// a shared base of size bytes: what onehost and trace measure from.
func StartOneHost(ctx context.Context, size int64, paths int, kex string) (*Bench, []string, error) {
	hosts := []string{"floor", "plain", "skiff"}
	var specs []lab.HostSpec
	for _, h := range hosts {
		specs = append(specs, lab.HostSpec{Name: h})
	}
	b, err := Start(ctx, specs, kex)
	if err != nil {
		return nil, nil, err
	}
	b.BasePaths = paths
	flake, err := b.WriteFlake(hosts, 1, size)
	if err == nil {
		err = Build(ctx, flake, hosts)
	}
	if err == nil {
		_, err = b.Deploy(ctx, flake, "--magic-rollback=false")
	}
	if err != nil {
		b.Stop()
		return nil, nil, err
	}
	return b, hosts, nil
}

// Settle waits, at most max, until the machine is nearly idle: less than
// a tenth of its CPU time busy over half a second. The lab's hosts starting
// and the untimed builds would otherwise weigh on the next measurement
// (the fleet figures moved by a quarter from run to run without it). It
// reports whether the machine settled.
func Settle(max time.Duration) bool {
	busy := func() (busy, total uint64, ok bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "cpu" {
			return 0, 0, false
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		return busy, total, true
	}
	for deadline := time.Now().Add(max); time.Now().Before(deadline); {
		b0, t0, ok0 := busy()
		time.Sleep(500 * time.Millisecond)
		b1, t1, ok1 := busy()
		if !ok0 || !ok1 {
			return false
		}
		if t1 > t0 && (b1-b0)*10 < t1-t0 {
			return true
		}
	}
	return false
}

// Load is the machine's load average (1, 5, 15 minutes): the deployer and the lab
// hosts share its CPUs with anything else running.
func Load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
