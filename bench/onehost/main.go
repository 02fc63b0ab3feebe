// Command onehost measures a one-host skiff deploy of the example flake on
// the test fleet against a floor measured in the same run: a bare script of
// the unavoidable steps (nix-copy-closure, one nix-env --set over ssh, one
// switch-to-configuration over ssh). It prints both times, their ratio and
// the ssh logins each made (counted in the hosts' sshd logs).
//
//	go run ./bench/onehost [-rounds 5] [-size 8388608]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/cli"
	"github.com/skiffdeploy/skiff/internal/lab"
)

func main() {
	rounds := flag.Int("rounds", 5, "deploys measured for each side")
	size := flag.Int64("size", 8<<20, "bytes of filler in the shared base path (closure size)")
	flag.Parse()
	if err := run(*rounds, *size); err != nil {
		fmt.Fprintln(os.Stderr, "onehost:", err)
		os.Exit(1)
	}
}

func run(rounds int, size int64) error {
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
	l, err := lab.Start(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Hosts: []lab.HostSpec{{Name: "floor"}, {Name: "plain"}, {Name: "skiff"}}})
	if err != nil {
		return err
	}
	defer l.Stop()

	var floorTimes, plainTimes, skiffTimes []time.Duration
	for i := 1; i <= rounds; i++ {
		// Build generation i once, untimed, so both sides copy and
		// activate the same fresh closure.
		flake := filepath.Join(dir, fmt.Sprintf("flake%d", i))
		if err := writeFlake(flake, i, size); err != nil {
			return err
		}
		top, err := build(ctx, flake, "floor")
		if err != nil {
			return err
		}
		for _, h := range []string{"plain", "skiff"} {
			if _, err := build(ctx, flake, h); err != nil {
				return err
			}
		}

		start := time.Now()
		if err := floor(ctx, l, "floor", top); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		floorTimes = append(floorTimes, time.Since(start))

		for _, side := range []struct {
			host  string
			args  []string
			times *[]time.Duration
		}{
			{"plain", []string{"--magic-rollback=false"}, &plainTimes},
			{"skiff", nil, &skiffTimes},
		} {
			start = time.Now()
			var stdout, stderr bytes.Buffer
			args := append([]string{"-F", l.SSHConfig(), "--nix-option", "substituters=", "deploy", side.host, "--flake", flake}, side.args...)
			code := cli.Main(ctx, args, strings.NewReader(""), &stdout, &stderr)
			*side.times = append(*side.times, time.Since(start))
			if code != 0 {
				return fmt.Errorf("skiff deploy exited %d:\n%s", code, stderr.String())
			}
		}
	}
	f, p, s := median(floorTimes), median(plainTimes), median(skiffTimes)
	perDeploy := func(host string) float64 { return float64(l.Host(host).Logins("root")) / float64(rounds) }
	fmt.Printf("one-host deploy, %d rounds, closure with a %d MiB shared base (median)\n", rounds, size>>20)
	fmt.Printf("  floor: nix-copy-closure + ssh nix-env --set + ssh switch-to-configuration  %8v  logins %.1f\n", f.Round(time.Millisecond), perDeploy("floor"))
	fmt.Printf("  skiff deploy --magic-rollback=false (plain switch)                        %8v  logins %.1f  ratio %.2f (target <= 1.3)\n",
		p.Round(time.Millisecond), perDeploy("plain"), float64(p)/float64(f))
	fmt.Printf("  skiff deploy (default: supervised, confirmed over a fresh connection)     %8v  logins %.1f  ratio %.2f\n",
		s.Round(time.Millisecond), perDeploy("skiff"), float64(s)/float64(f))
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func writeFlake(dir string, gen int, size int64) error {
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
	flake := fmt.Sprintf(`{
  outputs = { self }: let lib = import ./lib.nix; in {
    nixosConfigurations = {
      floor = lib.mkSystem { name = "floor"; generation = %[1]d; baseSize = %[2]d; };
      plain = lib.mkSystem { name = "plain"; generation = %[1]d; baseSize = %[2]d; };
      skiff = lib.mkSystem { name = "skiff"; generation = %[1]d; baseSize = %[2]d; };
    };
  };
}
`, gen, size)
	return os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644)
}

func build(ctx context.Context, flake, host string) (string, error) {
	out, err := exec.CommandContext(ctx, "nix", "--extra-experimental-features", "nix-command flakes",
		"--option", "substituters", "", "build", "--no-link", "--json",
		flake+"#nixosConfigurations."+host+".config.system.build.toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", host, err)
	}
	i := strings.Index(string(out), `"out":"`)
	if i < 0 {
		return "", fmt.Errorf("build %s: unexpected output %s", host, out)
	}
	rest := string(out)[i+7:]
	return rest[:strings.Index(rest, `"`)], nil
}

// floor is the bare script: what any tool must at least do.
func floor(ctx context.Context, l *lab.Lab, host, top string) error {
	ssh := []string{"ssh", "-F", l.SSHConfig(), "root@" + host}
	steps := [][]string{
		{"nix-copy-closure", "--to", "root@" + host, top},
		append(append([]string{}, ssh...), "nix-env", "-p", "/nix/var/nix/profiles/system", "--set", top),
		append(append([]string{}, ssh...), top+"/bin/switch-to-configuration", "switch"),
	}
	for _, argv := range steps {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "NIX_SSHOPTS=-F "+l.SSHConfig())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
	}
	return nil
}
