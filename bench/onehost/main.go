// Command onehost measures a one-host skiff deploy of the example flake on the
// test fleet against the floor, measured in the same run: what
// `nixos-rebuild switch --flake .#HOST --target-host root@HOST` does (nix build,
// a cache hit; then over one ControlMaster connection nix-copy-closure, nix-env
// --set and switch-to-configuration switch). Each host sits behind a delay proxy;
// every figure is printed for each round-trip delay. Each round deploys a new
// generation to each side's own host; the figures are medians.
//
//	go run -C bench ./onehost [-rounds 5] [-delay 0,50ms] [-size 8388608] [-paths 0]
//
// -paths N adds N small store paths to every system's closure (lib.nix's
// basePaths), shared by all generations: a closure as large as a real NixOS
// system's (2,000 paths and more).
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/skiffdeploy/skiff/bench/internal/benchlab"
)

func main() {
	rounds := flag.Int("rounds", 5, "deploys measured for each side and delay")
	size := flag.Int64("size", 8<<20, "bytes of filler in the shared base path (closure size)")
	paths := flag.Int("paths", 0, "small store paths in every system's closure besides its own few")
	benchlab.Main("onehost", "0,50ms", func(ctx context.Context, ds []time.Duration, kex string) error {
		if *paths < 0 {
			return fmt.Errorf("-paths must not be negative")
		}
		return run(ctx, *rounds, ds, *size, *paths, kex)
	})
}

// side is one way to deploy, on its own host.
type side struct {
	name  string
	host  string
	skiff []string // skiff deploy arguments; nil for the floor
	benchlab.Samples
	logins int
	trace  benchlab.Trace // of the last round
}

func run(ctx context.Context, rounds int, delays []time.Duration, size int64, paths int, kex string) error {
	// Generation 1 everywhere, untimed: the shared base is on every host.
	b, hosts, err := benchlab.StartOneHost(ctx, size, paths, kex)
	if err != nil {
		return err
	}
	defer b.Stop()
	gen := 1

	fmt.Printf("one-host deploy of a new generation (a %d MiB shared base and %d more shared paths already on the host), %d rounds, medians; %s; load average at start: %s\n", size>>20, paths, rounds, b.About(), benchlab.Load())
	for _, delay := range delays {
		if err := b.SetDelay(ctx, delay); err != nil {
			return err
		}
		sides := []*side{
			{name: "floor (nixos-rebuild --target-host steps)", host: "floor"},
			{name: "skiff deploy --magic-rollback=false", host: "plain", skiff: []string{"--magic-rollback=false"}},
			{name: "skiff deploy (supervised)", host: "skiff", skiff: []string{}},
		}
		for range rounds {
			gen++
			flake, err := b.WriteFlake(hosts, gen, size)
			if err != nil {
				return err
			}
			if err := benchlab.Build(ctx, flake, hosts); err != nil {
				return err
			}
			for _, s := range sides {
				before := b.Logins(s.host)
				var u benchlab.Usage
				if s.skiff == nil {
					u, err = b.Floor(ctx, flake, s.host)
				} else {
					u, err = b.Deploy(ctx, flake, append([]string{s.host}, s.skiff...)...)
					s.trace = benchlab.CountTrace(u.Stderr)
				}
				if err != nil {
					return err
				}
				s.Add(u)
				s.logins = b.Logins(s.host) - before
			}
		}
		handshake, err := b.Handshake(ctx, "floor", 5)
		if err != nil {
			return err
		}
		floor := benchlab.Median(sides[0].Wall)
		fmt.Printf("\nround trip %v (one ssh handshake: %s)\n", delay, benchlab.Ms(handshake))
		fmt.Printf("  %-42s %8s  ratio  CPU      machine  logins  ssh cmds (fresh)  copies\n", "", "time")
		for _, s := range sides {
			t := benchlab.Median(s.Wall)
			cmds := "3 (0)             1 (nix-copy-closure)"
			if s.skiff != nil {
				cmds = fmt.Sprintf("%-17s %d", fmt.Sprintf("%d (%d)", s.trace.SSH, s.trace.Fresh), s.trace.Copies)
			}
			fmt.Printf("  %-42s %8s  %5.2f  %-7s  %-7s  %d       %s\n", s.name, benchlab.Ms(t), float64(t)/float64(floor),
				benchlab.Ms(benchlab.Median(s.CPU)), benchlab.Ms(benchlab.Median(s.Machine)), s.logins, cmds)
		}
		fmt.Printf("  %-42s %8s  %5.2f\n", "reference: floor + one ssh handshake", benchlab.Ms(floor+handshake), float64(floor+handshake)/float64(floor))
	}
	fmt.Printf("\nload average at the end: %s\n", benchlab.Load())
	return nil
}
