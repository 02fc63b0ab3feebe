package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// HostSpec describes one lab host.
type HostSpec struct {
	// Name is the host's name in ssh_config, its journal hostname and its directory.
	Name string
	// StoreSize > 0 gives the host a /nix of that many bytes (a tmpfs), to run out of
	// space on purpose.
	StoreSize int64
	// SudoPassword, when set, is the deploy user's password, and sudo asks for it.
	SudoPassword string
	// NoSudo, when set, gives the deploy user no sudo rights at all (no sudoers rule).
	NoSudo bool
	// ExtraNixConf is appended to the host's nix.conf (e.g. "extra-platforms = aarch64-linux"
	// or "trusted-users = root deploy").
	ExtraNixConf string
	// Darwin lays the host out like a nix-darwin machine: a uname that says Darwin
	// (x86_64), and no systemctl or journalctl (see DarwinShims).
	Darwin bool
	// MaxStartups, when set, is the host's sshd MaxStartups (say "1": sshd drops
	// new connections while one is unauthenticated, as a busy host does).
	MaxStartups string
}

// Options configure Start.
type Options struct {
	// Dir holds the lab: keys, ssh_config, known_hosts, lab.json, and hosts/NAME.
	Dir string
	// Hosts to start, in address order.
	Hosts []HostSpec
	// Subnet forces 127.0.Subnet.0/24; 0 picks a free one.
	Subnet int
}

// Lab is a running test fleet.
type Lab struct {
	dir     string
	subnet  int
	hosts   []*Host
	byName  map[string]*Host
	libDir  string
	pubKey  string
	reboots *rebootWatch
	mu      sync.Mutex // guards the state file and the fields below
	lock    *os.File   // flock of the subnet
	stopped bool
}

// Hosts returns n host specs named prefix1..prefixN (prefix "" means "h").
func Hosts(n int, prefix string) []HostSpec {
	if prefix == "" {
		prefix = "h"
	}
	specs := make([]HostSpec, n)
	for i := range specs {
		specs[i] = HostSpec{Name: prefix + strconv.Itoa(i+1)}
	}
	return specs
}

var (
	hostNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	maxStartupsRE = regexp.MustCompile(`^[0-9]+(:[0-9]+:[0-9]+)?$`)
)

// Start starts a lab in opts.Dir: all hosts in parallel, returning once each accepts
// SSH connections. A Dir used before keeps its client key, host keys and stores (a
// lab restarted on the same Dir prefers its previous subnet). On error, everything
// started is stopped again.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("start lab: no directory")
	}
	if len(opts.Hosts) == 0 {
		return nil, errors.New("start lab: no hosts")
	}
	if len(opts.Hosts) > 250 {
		return nil, fmt.Errorf("start lab: %d hosts do not fit in one /24", len(opts.Hosts))
	}
	seen := map[string]bool{}
	for _, h := range opts.Hosts {
		if !hostNameRE.MatchString(h.Name) {
			return nil, fmt.Errorf("start lab: invalid host name %q", h.Name)
		}
		if h.MaxStartups != "" && !maxStartupsRE.MatchString(h.MaxStartups) {
			return nil, fmt.Errorf("start lab: host %s: invalid MaxStartups %q", h.Name, h.MaxStartups)
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("start lab: host %s listed twice", h.Name)
		}
		seen[h.Name] = true
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}

	prefer := 0
	if old, err := ReadState(dir); err == nil {
		for _, hs := range old.Hosts {
			if hs.Running() {
				return nil, fmt.Errorf("start lab in %s: host %s of a previous start is still running (run skiff-lab down --dir %s)", dir, hs.Name, dir)
			}
		}
		prefer = old.Subnet
		// Stores of a previous start that a crashed process left mounted.
		for _, hs := range old.Hosts {
			if hs.StoreMount != "" {
				_ = unmountStore(hs.StoreMount)
			}
		}
	}
	subnet, lock, err := pickSubnet(opts.Subnet, prefer)
	if err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}

	l := &Lab{dir: dir, subnet: subnet, byName: map[string]*Host{}, libDir: filepath.Join(dir, "lib"), lock: lock}
	for i, spec := range opts.Hosts {
		h := &Host{
			Name: spec.Name,
			Addr: fmt.Sprintf("127.0.%d.%d", subnet, i+2),
			Dir:  filepath.Join(dir, "hosts", spec.Name),
			Spec: spec,
			lab:  l,
		}
		l.hosts = append(l.hosts, h)
		l.byName[h.Name] = h
	}
	if err := l.setup(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("start lab in %s: %w", dir, err)
	}

	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = l.Stop()
		return nil, fmt.Errorf("start lab in %s: %w", dir, err)
	}
	l.reboots = l.watchReboots()
	return l, nil
}

// setup writes the lab's files: the setup script, the client key, every host's files
// and authorized keys, known_hosts and ssh_config.
func (l *Lab) setup() error {
	if err := os.MkdirAll(l.libDir, 0o755); err != nil {
		return err
	}
	if err := installAsset("setup.sh", filepath.Join(l.libDir, "setup.sh")); err != nil {
		return err
	}
	key := filepath.Join(l.dir, "id_ed25519")
	if _, err := os.Stat(key); os.IsNotExist(err) {
		if err := sshKeygen(key, "skiff-lab"); err != nil {
			return err
		}
	}
	pub, err := publicKeyLine(key + ".pub")
	if err != nil {
		return err
	}
	l.pubKey = pub

	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.prepare(); err != nil {
				errs[i] = fmt.Errorf("prepare %s: %w", h.Name, err)
				return
			}
			for _, user := range []string{"root", DeployUser} {
				if err := h.SetAuthorizedKeys(user, []string{pub + " skiff-lab"}); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	var known, config strings.Builder
	config.WriteString("# skiff lab in " + l.dir + ": use with ssh -F (and skiff -F)\n")
	for _, h := range l.hosts {
		hostKey, err := publicKeyLine(filepath.Join(h.Dir, "etc", "ssh", "ssh_host_ed25519_key.pub"))
		if err != nil {
			return err
		}
		fmt.Fprintf(&known, "%s %s\n", h.Addr, hostKey)
		fmt.Fprintf(&config, "\nHost %s\n  HostName %s\n  Port 22\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n",
			h.Name, h.Addr, quoteConf(key), quoteConf(l.KnownHosts()))
	}
	if err := writeFileAtomic(l.KnownHosts(), []byte(known.String()), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(l.SSHConfig(), []byte(config.String()), 0o644); err != nil {
		return err
	}
	return l.saveState()
}

// saveState writes DIR/lab.json from the hosts' current pids and mounts.
func (l *Lab) saveState() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &State{Dir: l.dir, Subnet: l.subnet}
	for _, h := range l.hosts {
		s.Hosts = append(s.Hosts, h.state())
	}
	if err := writeState(l.dir, s); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// Stop stops every host (every process of it, see the package doc), unmounts the
// size-limited stores and releases the subnet. It is idempotent.
func (l *Lab) Stop() error {
	l.reboots.stop()
	var errs []error
	errs2 := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs2[i] = h.stop(true)
		}()
	}
	wg.Wait()
	errs = append(errs, errs2...)
	if err := l.saveState(); err != nil {
		errs = append(errs, err)
	}
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		if l.lock != nil {
			l.lock.Close()
		}
	}
	l.mu.Unlock()
	return errors.Join(errs...)
}

// Dir returns the lab's directory.
func (l *Lab) Dir() string { return l.dir }

// Subnet returns S of the lab's 127.0.S.0/24.
func (l *Lab) Subnet() int { return l.subnet }

// SSHConfig returns the path of DIR/ssh_config, for ssh -F.
func (l *Lab) SSHConfig() string { return filepath.Join(l.dir, "ssh_config") }

// KnownHosts returns the path of DIR/known_hosts (every host's key at its address).
func (l *Lab) KnownHosts() string { return filepath.Join(l.dir, "known_hosts") }

// IdentityFile returns the path of the client's private key, DIR/id_ed25519.
func (l *Lab) IdentityFile() string { return filepath.Join(l.dir, "id_ed25519") }

// PublicKey returns the client's public key line ("ssh-ed25519 AAAA..."), which is
// authorized for root and deploy on every host at start; flakes that declare
// authorized keys should include it.
func (l *Lab) PublicKey() string { return l.pubKey }

// Host returns the host called name, or nil.
func (l *Lab) Host(name string) *Host { return l.byName[name] }

// Hosts returns the lab's hosts in address order.
func (l *Lab) Hosts() []*Host { return append([]*Host(nil), l.hosts...) }
