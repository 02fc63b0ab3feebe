package nspawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Deployer runs commands as root in a chroot of a release's tree (not a
// container: the machine's network, processes and devices), with a /nix of
// its own, so that a deployer uses that release's nix, nix-store and ssh
// instead of the machine's. Each command gets a fresh writable layer over
// the tree; /nix and the bound paths are shared by every command.
type Deployer struct {
	release Release
	tree    string
	dir     string
	binds   []string
	runs    atomic.Int64
}

// DeployerOptions configure NewDeployer.
type DeployerOptions struct {
	// Release whose tree the commands run in; the zero Release is Bookworm.
	Release Release
	// Dir holds the deployer's own /nix (DIR/nix) and the commands' layers.
	Dir string
	// Binds are absolute paths of the machine (files or directories) made
	// visible at the same paths inside the chroot: an ssh_config with its
	// keys and known_hosts, a flake, the binary to run.
	Binds []string
	// Cache and Mirror are as in Options.
	Cache, Mirror string
	Logf          func(string, ...any)
}

// NewDeployer builds the release's tree when needed and makes DIR/nix.
func NewDeployer(ctx context.Context, opts DeployerOptions) (*Deployer, error) {
	opts.Release = opts.Release.orDefault()
	if err := opts.Release.Available(opts.Cache); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil || opts.Dir == "" {
		return nil, fmt.Errorf("nspawn: invalid deployer directory %q", opts.Dir)
	}
	for _, b := range opts.Binds {
		if !filepath.IsAbs(b) {
			return nil, fmt.Errorf("nspawn: deployer bind %q is not absolute", b)
		}
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("nspawn: deployer bind: %w", err)
		}
	}
	tree, err := Tree(ctx, opts.Release, opts.Cache, opts.Mirror, opts.Logf)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "nix"), 0o755); err != nil {
		return nil, fmt.Errorf("nspawn: deployer: %w", err)
	}
	return &Deployer{release: opts.Release, tree: tree, dir: dir, binds: append([]string(nil), opts.Binds...)}, nil
}

// Release is the release the deployer runs.
func (d *Deployer) Release() Release { return d.release }

// Nix is the deployer's own /nix on the machine.
func (d *Deployer) Nix() string { return filepath.Join(d.dir, "nix") }

// chrootScript mounts, in the private mount namespace it runs in, the
// command's layer over the tree, the deployer's /nix, /dev, /proc and the
// bound paths, then runs the command in the chroot. Arguments: TREE UPPER
// WORK ROOT NIX BIND... -- ARGV...
const chrootScript = `set -eu
tree=$1 upper=$2 work=$3 root=$4 nix=$5
shift 5
mount -t overlay overlay -o "lowerdir=$tree,upperdir=$upper,workdir=$work" "$root"
mount --bind "$nix" "$root/nix"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
while [ "$1" != -- ]; do
	if [ -d "$1" ]; then
		mkdir -p "$root$1"
	else
		mkdir -p "$root$(dirname "$1")"
		: >"$root$1"
	fi
	mount --bind "$1" "$root$1"
	shift
done
shift
exec chroot "$root" "$@"`

// Run runs argv in the chroot with stdin, env added to a root login's
// environment (PATH, HOME=/root, LANG), and returns its output and exit
// code; err is set only when the command could not run at all.
func (d *Deployer) Run(ctx context.Context, stdin []byte, env []string, argv ...string) (stdout, stderr []byte, code int, err error) {
	run := filepath.Join(d.dir, "runs", strconv.FormatInt(d.runs.Add(1), 10))
	upper, work, root := filepath.Join(run, "upper"), filepath.Join(run, "work"), filepath.Join(run, "root")
	for _, p := range []string{upper, work, root} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, nil, -1, fmt.Errorf("nspawn: deployer: %w", err)
		}
	}
	defer os.RemoveAll(run)
	args := []string{"--mount", "--propagation", "private", "sh", "-c", chrootScript, "sh", d.tree, upper, work, root, d.Nix()}
	args = append(append(append(args, d.binds...), "--"), argv...)
	unshare, err := tool("unshare")
	if err != nil {
		return nil, nil, -1, err
	}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}, env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.Bytes(), errb.Bytes(), 0, nil
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return out.Bytes(), errb.Bytes(), exit.ExitCode(), nil
	default:
		return out.Bytes(), errb.Bytes(), -1, fmt.Errorf("nspawn: deployer: %s: %w", argv[0], err)
	}
}
