// Command skiff-lab starts, inspects and stops a skiff test fleet (see internal/lab):
//
//	skiff-lab up --dir D [--hosts web1,web2,db1 | --hosts N --prefix h] [--subnet S] [--store-size SIZE]
//	skiff-lab status --dir D
//	skiff-lab down --dir D
//
// up prints where the lab's ssh_config is and how to use it; the hosts keep running
// after it exits, until down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/skiffdeploy/skiff/internal/lab"
)

const usage = `usage:
  skiff-lab up --dir DIR [--hosts web1,web2,db1 | --hosts N [--prefix h]] [--subnet S] [--store-size SIZE]
  skiff-lab status --dir DIR
  skiff-lab down --dir DIR

up starts the hosts (default: web1,web2,db1, the hosts of examples/fleet) and leaves
them running; down stops every process of the lab and unmounts its stores.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors that are the caller's (exit code 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "up":
		err = up(ctx, args[1:], stdout, stderr)
	case "down":
		err = down(args[1:], stdout, stderr)
	case "status":
		err = status(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "skiff-lab: error: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "skiff-lab: error: %v\n", err)
		return 1
	}
}

func flags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("skiff-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the lab's directory (required)")
	return fs, dir
}

func parse(fs *flag.FlagSet, dir *string, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *dir == "" {
		return fmt.Errorf("%w: --dir is required", errUsage)
	}
	return nil
}

// hostSpecs turns --hosts (a number, or comma-separated names) into host specs.
func hostSpecs(hosts, prefix string, storeSize int64) ([]lab.HostSpec, error) {
	var specs []lab.HostSpec
	if n, err := strconv.Atoi(hosts); err == nil {
		if n < 1 {
			return nil, fmt.Errorf("%w: --hosts %d: need at least one host", errUsage, n)
		}
		specs = lab.Hosts(n, prefix)
	} else {
		for _, name := range strings.Split(hosts, ",") {
			if name = strings.TrimSpace(name); name != "" {
				specs = append(specs, lab.HostSpec{Name: name})
			}
		}
		if len(specs) == 0 {
			return nil, fmt.Errorf("%w: --hosts names no host", errUsage)
		}
	}
	for i := range specs {
		specs[i].StoreSize = storeSize
	}
	return specs, nil
}

// parseSize parses a byte count with an optional K, M or G suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult, s = 1<<10, s[:len(s)-1]
	case "M":
		mult, s = 1<<20, s[:len(s)-1]
	case "G":
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: invalid size %q", errUsage, s)
	}
	return n * mult, nil
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dir := flags("up", stderr)
	hosts := fs.String("hosts", "web1,web2,db1", "host names (comma-separated) or a number of hosts")
	prefix := fs.String("prefix", "h", "name prefix when --hosts is a number")
	subnet := fs.Int("subnet", 0, "use 127.0.S.0/24 (default: a free one)")
	storeSize := fs.String("store-size", "", "give every host a /nix of this size (e.g. 256M)")
	if err := parse(fs, dir, args); err != nil {
		return err
	}
	size, err := parseSize(*storeSize)
	if err != nil {
		return err
	}
	specs, err := hostSpecs(*hosts, *prefix, size)
	if err != nil {
		return err
	}
	l, err := lab.Start(ctx, lab.Options{Dir: *dir, Hosts: specs, Subnet: *subnet})
	if err != nil {
		return err
	}
	first := l.Hosts()[0].Name
	fmt.Fprintf(stdout, "lab up in %s: %d hosts on 127.0.%d.0/24\n", l.Dir(), len(specs), l.Subnet())
	for _, h := range l.Hosts() {
		fmt.Fprintf(stdout, "  %-10s %s\n", h.Name, h.Addr)
	}
	fmt.Fprintf(stdout, "\nssh config: %s\n", l.SSHConfig())
	fmt.Fprintf(stdout, "  ssh -F %s root@%s true\n", l.SSHConfig(), first)
	fmt.Fprintf(stdout, "  NIX_SSHOPTS='-F %s' nix copy --to ssh://root@%s PATH\n", l.SSHConfig(), first)
	fmt.Fprintf(stdout, "  pass the same file to skiff with -F; users: root, %s (sudo)\n", lab.DeployUser)
	fmt.Fprintf(stdout, "stop with: skiff-lab down --dir %s\n", l.Dir())
	return nil
}

func down(args []string, stdout, stderr io.Writer) error {
	fs, dir := flags("down", stderr)
	if err := parse(fs, dir, args); err != nil {
		return err
	}
	if err := lab.Down(*dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab in %s is down\n", *dir)
	return nil
}

func status(args []string, stdout, stderr io.Writer) error {
	fs, dir := flags("status", stderr)
	if err := parse(fs, dir, args); err != nil {
		return err
	}
	s, err := lab.ReadState(*dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab in %s on 127.0.%d.0/24\n", s.Dir, s.Subnet)
	for _, h := range s.Hosts {
		state := "stopped"
		if h.Running() {
			state = "running"
		}
		store := ""
		if h.StoreMount != "" {
			store = fmt.Sprintf("  store: tmpfs of %d bytes", h.StoreSize)
		}
		fmt.Fprintf(stdout, "  %-10s %-15s %s%s\n", h.Name, h.Addr, state, store)
	}
	fmt.Fprintf(stdout, "ssh config: %s/ssh_config\n", s.Dir)
	return nil
}
