// Command trace shows where a deploy's time goes: it deploys a new
// generation to a bench lab host behind the delay proxy, with skiff -x, and
// prints every line skiff writes to standard error with the milliseconds
// since the deploy started. Each argument is one deploy: a host of the lab
// (floor, plain or skiff) and the deploy's flags, in one word list.
//
//	go run -C bench ./trace [-delay 50ms] [-kex NAME] ["skiff" "plain --magic-rollback=false" ...]
//
// -delay takes a comma-separated list, as the other benches do: every
// deploy is traced at each delay.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/bench/internal/benchlab"
)

func main() {
	benchlab.Main("trace", "50ms", func(ctx context.Context, delays []time.Duration, kex string) error {
		deploys := flag.Args()
		if len(deploys) == 0 {
			deploys = []string{"skiff", "plain --magic-rollback=false"}
		}
		return run(ctx, delays, kex, deploys)
	})
}

func run(ctx context.Context, delays []time.Duration, kex string, deploys []string) error {
	// Generation 1 everywhere, untimed, as bench/onehost does.
	b, hosts, err := benchlab.StartOneHost(ctx, 8<<20, 0, kex)
	if err != nil {
		return err
	}
	defer b.Stop()
	gen := 1
	for _, delay := range delays {
		if err := b.SetDelay(ctx, delay); err != nil {
			return err
		}
		for _, d := range deploys {
			gen++
			flake, err := b.WriteFlake(hosts, gen, 8<<20)
			if err != nil {
				return err
			}
			if err := benchlab.Build(ctx, flake, hosts); err != nil {
				return err
			}
			fmt.Printf("== skiff deploy %s (round trip %v; %s)\n", d, delay, b.About())
			if err := show(ctx, b, flake, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// show runs skiff -x deploy with the words of d on flake and prints each
// line of its standard error with the milliseconds since it started.
func show(ctx context.Context, b *benchlab.Bench, flake, d string) error {
	argv := append([]string{"-x", "-F", b.SSHConfig, "--nix-option", "substituters=", "--flake", flake, "deploy"}, strings.Fields(d)...)
	cmd := exec.CommandContext(ctx, b.Skiff, argv...)
	cmd.Env = append(os.Environ(), "SKIFF_HISTORY="+filepath.Join(b.Dir, "history.db"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fmt.Printf("%6d %s\n", time.Since(start).Milliseconds(), sc.Text())
	}
	err = cmd.Wait()
	fmt.Printf("%6d end: %v\n\n", time.Since(start).Milliseconds(), err)
	return nil
}
