// Command commands measures skiff diff and skiff rollback on the test fleet
// against their floors, measured in the same run: what `nixos-rebuild
// dry-activate --flake .#HOST --target-host root@HOST` does (nix build, a
// cache hit; then over one ControlMaster connection nix-copy-closure and
// switch-to-configuration dry-activate), and what `nixos-rebuild switch
// --rollback --target-host root@HOST` does (over one ControlMaster
// connection, nix-env --rollback and the profile's switch-to-configuration
// switch). Each host sits behind a delay proxy; every figure is printed for
// each round-trip delay. Each round builds a new generation: diff looks at it
// (copying what the host lacks), a deploy (untimed) puts it on every host,
// and the rollback returns each host to the one before. The figures are
// medians.
//
//	go run -C bench ./commands [-rounds 5] [-delay 0,50ms] [-skiff PATH]
//
// -skiff PATH measures that skiff binary (an older build, for a before and
// after) instead of one built from this tree.
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/skiffdeploy/skiff/bench/internal/benchlab"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds measured for each delay")
	skiff := flag.String("skiff", "", "the skiff binary to measure (default: built from this tree)")
	benchlab.Main("commands", "0,50ms", func(ctx context.Context, ds []time.Duration, kex string) error {
		if *rounds < 1 {
			return fmt.Errorf("-rounds must be at least 1")
		}
		return run(ctx, *rounds, ds, *skiff, kex)
	})
}

// step is one measured command, or its floor (floor nil).
type step struct {
	name  string
	floor *step // the floor it is compared with; nil for a floor
	benchlab.Samples
	trace benchlab.Trace // of the last round
}

func (s *step) add(u benchlab.Usage) {
	s.Add(u)
	if s.floor != nil { // skiff's, with a trace
		s.trace = benchlab.CountTrace(u.Stderr)
	}
}

func run(ctx context.Context, rounds int, delays []time.Duration, skiff, kex string) error {
	const size = 8 << 20
	b, hosts, err := benchlab.StartOneHost(ctx, size, 0, kex)
	if err != nil {
		return err
	}
	defer b.Stop()
	which := "built from this tree"
	if skiff != "" {
		b.Skiff, which = skiff, skiff
	}
	gen := 1

	fmt.Printf("skiff diff and skiff rollback (skiff %s), %d rounds, medians; %s; load average at start: %s\n", which, rounds, b.About(), benchlab.Load())
	for _, delay := range delays {
		if err := b.SetDelay(ctx, delay); err != nil {
			return err
		}
		diffFloor := &step{name: "floor (nixos-rebuild dry-activate steps)"}
		diff := &step{name: "skiff diff", floor: diffFloor}
		rbFloor := &step{name: "floor (nixos-rebuild switch --rollback steps)"}
		rbPlain := &step{name: "skiff rollback --magic-rollback=false", floor: rbFloor}
		rb := &step{name: "skiff rollback (supervised)", floor: rbFloor}
		for range rounds {
			gen++
			flake, err := b.WriteFlake(hosts, gen, size)
			if err != nil {
				return err
			}
			if err := benchlab.Build(ctx, flake, hosts); err != nil {
				return err
			}
			// Each measurement starts on a nearly idle machine (at most
			// half a minute's wait).
			measure := func(s *step, run func() (benchlab.Usage, error)) error {
				benchlab.Settle(30 * time.Second)
				u, err := run()
				if err == nil {
					s.add(u)
				}
				return err
			}
			if err := measure(diffFloor, func() (benchlab.Usage, error) {
				return b.FloorOf(ctx, "floor.sh", flake, "floor", "dry-activate")
			}); err != nil {
				return err
			}
			if err := measure(diff, func() (benchlab.Usage, error) { return b.Run(ctx, flake, "diff", "skiff") }); err != nil {
				return err
			}
			// Something to roll back: the new generation everywhere.
			if _, err := b.Deploy(ctx, flake, "--magic-rollback=false"); err != nil {
				return err
			}
			if err := measure(rbFloor, func() (benchlab.Usage, error) { return b.FloorOf(ctx, "floor-rollback.sh", "floor") }); err != nil {
				return err
			}
			if err := measure(rbPlain, func() (benchlab.Usage, error) {
				return b.Run(ctx, flake, "rollback", "plain", "--magic-rollback=false")
			}); err != nil {
				return err
			}
			if err := measure(rb, func() (benchlab.Usage, error) { return b.Run(ctx, flake, "rollback", "skiff") }); err != nil {
				return err
			}
		}
		fmt.Printf("\nround trip %v\n", delay)
		fmt.Printf("  %-46s %8s  ratio  CPU      machine  ssh cmds (fresh)\n", "", "time")
		for _, s := range []*step{diffFloor, diff, rbFloor, rbPlain, rb} {
			t := benchlab.Median(s.Wall)
			ratio, cmds := 1.0, "-"
			if s.floor != nil {
				ratio = float64(t) / float64(benchlab.Median(s.floor.Wall))
				cmds = fmt.Sprintf("%d (%d)", s.trace.SSH, s.trace.Fresh)
			}
			fmt.Printf("  %-46s %8s  %5.2f  %-7s  %-7s  %s\n", s.name, benchlab.Ms(t), ratio,
				benchlab.Ms(benchlab.Median(s.CPU)), benchlab.Ms(benchlab.Median(s.Machine)), cmds)
		}
	}
	fmt.Printf("\nload average at the end: %s\n", benchlab.Load())
	return nil
}
