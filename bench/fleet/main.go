// Command fleet measures a 20-host deploy of the example flake's systems on
// the test fleet against 20 sequential one-host deploys measured in the
// same run, a no-op redeploy, the ssh logins per host (from the hosts' sshd
// logs) and the nix evaluations per run (from skiff's -x trace).
//
//	go run ./bench/fleet [-hosts 20]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/cli"
	"github.com/skiffdeploy/skiff/internal/lab"
)

func main() {
	n := flag.Int("hosts", 20, "hosts in the fleet")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	if err := lab.Available(); err != nil {
		return err
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "skiff-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Setenv("SKIFF_HISTORY", filepath.Join(dir, "history.db")) // not the user's history
	specs := lab.Hosts(n, "b")
	l, err := lab.Start(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Hosts: specs})
	if err != nil {
		return err
	}
	defer l.Stop()
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	var busy float64 // share of the machine's CPUs busy during the last run
	skiff := func(gen int, args ...string) (time.Duration, string, error) {
		flake := filepath.Join(dir, fmt.Sprintf("flake%d", gen))
		if _, err := os.Stat(flake); err != nil {
			if err := writeFlake(flake, names, gen); err != nil {
				return 0, "", err
			}
		}
		var stdout, stderr bytes.Buffer
		b0, t0 := cpuTicks()
		start := time.Now()
		defer func() {
			b1, t1 := cpuTicks()
			if t1 > t0 {
				busy = float64(b1-b0) / float64(t1-t0)
			}
		}()
		code := cli.Main(ctx, append([]string{"-x", "-F", l.SSHConfig(), "--nix-option", "substituters=", "--flake", flake, "deploy"}, args...),
			strings.NewReader(""), &stdout, &stderr)
		d := time.Since(start)
		if code != 0 {
			return d, "", fmt.Errorf("skiff deploy %v exited %d:\n%s", args, code, stderr.String())
		}
		return d, stderr.String(), nil
	}
	logins := func() int {
		total := 0
		for _, h := range l.Hosts() {
			total += h.Logins("root")
		}
		return total
	}

	// Warm up: every host gets generation 1 (the shared base is copied).
	if _, _, err := skiff(1); err != nil {
		return err
	}
	// Generation 2, one host after the other.
	var seq time.Duration
	var seqBusy float64
	for _, h := range names {
		d, _, err := skiff(2, h)
		if err != nil {
			return err
		}
		seq += d
		seqBusy += busy * float64(d)
	}
	seqBusy /= float64(seq)
	// Generation 3, the whole fleet in one run.
	before := logins()
	par, trace, err := skiff(3)
	if err != nil {
		return err
	}
	parBusy := busy
	perHost := float64(logins()-before) / float64(n)
	evals := strings.Count(trace, " eval --json ")
	// No-op redeploy.
	noop, trace2, err := skiff(3)
	if err != nil {
		return err
	}
	copies := strings.Count(trace2, " copy --to ")

	fmt.Printf("%d-host deploy (changed paths only, -p 10)\n", n)
	fmt.Printf("  %d sequential one-host deploys: %v (machine CPU busy %.0f%%)\n", n, seq.Round(time.Millisecond), 100*seqBusy)
	fmt.Printf("  one fleet deploy:              %v (machine CPU busy %.0f%%)\n", par.Round(time.Millisecond), 100*parBusy)
	fmt.Printf("  speed-up: %.1fx (target >= 8x)\n", float64(seq)/float64(par))
	fmt.Printf("  no-op redeploy of %d hosts: %v, nix copy runs: %d\n", n, noop.Round(time.Millisecond), copies)
	fmt.Printf("  ssh logins per host: %.1f\n", perHost)
	fmt.Printf("  nix evaluations per run: %d\n", evals)
	return nil
}

func writeFlake(dir string, names []string, gen int) error {
	src, err := filepath.Abs("examples/fleet")
	if err != nil {
		return err
	}
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		return err
	}
	for _, f := range []string{"flake.lock", "generation", "overrides.nix"} {
		os.Remove(filepath.Join(dir, f))
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "      %s = lib.mkSystem { name = %q; generation = %d; };\n", n, n, gen)
	}
	flake := "{\n  outputs = { self }: let lib = import ./lib.nix; in {\n    nixosConfigurations = {\n" + b.String() + "    };\n  };\n}\n"
	return os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644)
}

// cpuTicks reads the machine's busy and total CPU time from /proc/stat:
// the deployer and every lab host share this machine's CPUs.
func cpuTicks() (busy, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		var n uint64
		fmt.Sscan(v, &n)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}
