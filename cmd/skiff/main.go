// Command skiff deploys the NixOS hosts of a flake over SSH.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/skiffdeploy/skiff/internal/cli"
)

// A closed terminal (SIGHUP) is an interrupt too: skiff's children run in
// process groups of their own and hear of it only from skiff.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
