// Command fleet measures skiff on many hosts of the test fleet, each behind a
// delay proxy, at each round-trip delay:
//
//   - one `skiff deploy` of -hosts hosts (a new generation each) against the floor
//     (what `nixos-rebuild switch --flake .#HOST --target-host root@HOST` does, see
//     bench/onehost) run for one host after the other, both measured in this run;
//
//   - the no-op redeploy of the same hosts, unchanged;
//
//   - one `skiff deploy` of -big hosts: total time, time per host and skiff's
//     peak memory;
//
//   - the deployer's CPU per host (user + system of skiff or the floor and of every
//     process they start, ssh masters included).
//
//     go run -C bench ./fleet [-hosts 20] [-big 100] [-p 20] [-delay 0,50ms] [-paths N]
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/skiffdeploy/skiff/bench/internal/benchlab"
	"github.com/skiffdeploy/skiff/internal/lab"
)

func main() {
	n := flag.Int("hosts", 20, "hosts of the comparison with the floor")
	big := flag.Int("big", 100, "hosts of the large run")
	p := flag.Int("p", 20, "skiff deploy --parallel")
	paths := flag.Int("paths", 0, "small store paths in every system's closure besides its own few")
	benchlab.Main("fleet", "0,50ms", func(ctx context.Context, ds []time.Duration, kex string) error {
		if *n < 1 || *big < 1 || *p < 1 {
			return fmt.Errorf("-hosts, -big and -p must be at least 1")
		}
		return run(ctx, *n, *big, *p, *paths, ds, kex)
	})
}

func run(ctx context.Context, n, big, p, paths int, delays []time.Duration, kex string) error {
	specs := lab.Hosts(max(n, big), "b")
	var all []string
	for _, s := range specs {
		all = append(all, s.Name)
	}
	few := all[:n]
	b, err := benchlab.Start(ctx, specs, kex)
	if err != nil {
		return err
	}
	defer b.Stop()
	b.BasePaths = paths
	parallel := fmt.Sprintf("--parallel=%d", p)

	// newGen writes and builds (untimed) the next generation of the given hosts.
	gen := 0
	newGen := func(hosts []string) (string, error) {
		gen++
		flake, err := b.WriteFlake(all, gen, 0)
		if err == nil {
			err = benchlab.Build(ctx, flake, hosts)
		}
		return flake, err
	}
	// Warm up: every host gets generation 1 (the shared base is copied).
	flake, err := newGen(all)
	if err != nil {
		return err
	}
	if _, err := b.Deploy(ctx, flake, parallel, "--magic-rollback=false"); err != nil {
		return err
	}

	fmt.Printf("fleet deploys (skiff deploy --parallel=%d, %d more shared paths in every closure), %s, load average at start: %s\n", p, paths, b.About(), benchlab.Load())
	// Each measurement starts on a nearly idle machine (at most half a
	// minute's wait); one that could not says so.
	unsettled := 0
	settle := func() {
		if !benchlab.Settle(30 * time.Second) {
			unsettled++
		}
	}
	for _, delay := range delays {
		if err := b.SetDelay(ctx, delay); err != nil {
			return err
		}
		// The floor, one host after the other.
		flake, err := newGen(few)
		if err != nil {
			return err
		}
		var floor benchlab.Usage
		settle()
		for _, h := range few {
			u, err := b.Floor(ctx, flake, h)
			if err != nil {
				return err
			}
			floor.Wall += u.Wall
			floor.CPU += u.CPU
			floor.Machine += u.Machine
		}
		// skiff, all of them in one run.
		if flake, err = newGen(few); err != nil {
			return err
		}
		settle()
		before := b.Logins(few...)
		one, err := b.Deploy(ctx, flake, append([]string{parallel}, few...)...)
		if err != nil {
			return err
		}
		logins := b.Logins(few...) - before
		trace := benchlab.CountTrace(one.Stderr)
		settle()
		noop, err := b.Deploy(ctx, flake, append([]string{parallel}, few...)...)
		if err != nil {
			return err
		}
		// The large run.
		if flake, err = newGen(all[:big]); err != nil {
			return err
		}
		settle()
		large, err := b.Deploy(ctx, flake, append([]string{parallel}, all[:big]...)...)
		if err != nil {
			return err
		}

		perHost := func(d time.Duration, hosts int) string { return benchlab.Ms(d / time.Duration(hosts)) }
		fmt.Printf("\nround trip %v\n", delay)
		fmt.Printf("  %-44s %10s  %10s  %6s\n", "", "skiff", "floor", "ratio")
		fmt.Printf("  %-44s %10s  %10s  %6.2f\n", fmt.Sprintf("%d hosts, new generation (floor: one by one)", n),
			benchlab.Ms(one.Wall), benchlab.Ms(floor.Wall), float64(one.Wall)/float64(floor.Wall))
		fmt.Printf("  %-44s %10s  %10s  %6.2f\n", "  deployer CPU per host", perHost(one.CPU, n), perHost(floor.CPU, n), float64(one.CPU)/float64(floor.CPU))
		fmt.Printf("  %-44s %10s  %10s  %6.2f\n", "  machine CPU per host (deployer and hosts)", perHost(one.Machine, n), perHost(floor.Machine, n), float64(one.Machine)/float64(floor.Machine))
		fmt.Printf("  %-44s %10s\n", fmt.Sprintf("no-op redeploy of the %d hosts", n), benchlab.Ms(noop.Wall))
		fmt.Printf("  %-44s %10s\n", "  copies in it", fmt.Sprint(benchlab.CountTrace(noop.Stderr).Copies))
		fmt.Printf("  %-44s %10s\n", fmt.Sprintf("%d hosts, new generation", big), benchlab.Ms(large.Wall))
		fmt.Printf("  %-44s %10s\n", "  time per host", perHost(large.Wall, big))
		fmt.Printf("  %-44s %10s\n", "  deployer CPU per host", perHost(large.CPU, big))
		fmt.Printf("  %-44s %10s\n", "  skiff's own peak RSS (VmHWM)", mib(large.PeakRSS))
		fmt.Printf("  %-44s %10s\n", "  largest process of the run (ru_maxrss)", mib(large.TreeMaxRSS))
		fmt.Printf("  per host in the %d-host deploy: %.1f ssh logins, %.1f ssh commands (%.1f on a fresh connection), %.1f copies; %d nix evaluations\n",
			n, float64(logins)/float64(n), float64(trace.SSH)/float64(n), float64(trace.Fresh)/float64(n), float64(trace.Copies)/float64(n),
			trace.Evals)
	}
	if unsettled > 0 {
		fmt.Printf("\n%d measurement(s) started on a busy machine (not idle within 30 s)\n", unsettled)
	}
	fmt.Printf("\nload average at the end: %s\n", benchlab.Load())
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
