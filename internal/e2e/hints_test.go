package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

var quotedRE = regexp.MustCompile(`"([^"]*)"`)

// hintCommand is the command of skiff's hint lines, as printed, that
// starts with prefix: the text between a pair of double quotes.
func hintCommand(t *testing.T, stderr, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(stderr, "\n") {
		_, hint, ok := strings.Cut(l, "skiff: hint: ")
		if !ok {
			continue
		}
		for _, m := range quotedRE.FindAllStringSubmatch(hint, -1) {
			if strings.HasPrefix(m[1], prefix) {
				return m[1]
			}
		}
	}
	t.Fatalf("no hint with a command starting with %q:\n%s", prefix, stderr)
	return ""
}

// runHint runs a hint's command as a user would type it: through sh -c,
// with the test's environment, in a home of its own (a hint that writes
// to ~/.ssh must not touch the machine's).
func runHint(t *testing.T, cmd string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := c.CombinedOutput()
	t.Logf("$ %s\n%s(%v)", cmd, out, err)
	return string(out), err
}

// sshTo logs in to a host of l with the lab's configuration, as the user
// would after following a hint.
func sshTo(t *testing.T, l *lab.Lab, host string, remote ...string) (string, error) {
	t.Helper()
	argv := append([]string{"-F", l.SSHConfig(), "-o", "BatchMode=yes", "-o", "ControlPath=none", "root@" + host, "--"}, remote...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", argv...).CombinedOutput()
	return string(out), err
}

// removeKnownHost drops host's key from the lab's known_hosts, as for a
// host never connected to.
func removeKnownHost(t *testing.T, l *lab.Lab, h *lab.Host) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-f", l.KnownHosts(), "-R", h.Addr).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -R: %v: %s", err, out)
	}
}

// fingerprint is the SHA256 fingerprint of h's ed25519 host key, as its
// console shows it.
func fingerprint(t *testing.T, h *lab.Host) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-lf", filepath.Join(h.Dir, "etc", "ssh", "ssh_host_ed25519_key.pub")).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[1]
}

// Every hint skiff prints for an ssh failure is a command that works when
// typed as printed, after skiff has exited: with the -F file skiff was
// given, the address, port and known_hosts file that configuration names.
func TestSSHHintsRunAsPrinted(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "hnew"}, lab.HostSpec{Name: "hre"}, lab.HostSpec{Name: "hauth"}, lab.HostSpec{Name: "hunits"})
	flake := writeFlake(t, host("hnew", "")+host("hre", "")+host("hauth", "")+host("hunits",
		`units = { "sshd.service" = { description = "OpenSSH Daemon"; }; "demo-web.service" = { description = "Demo web service"; fails = true; }; };`))

	t.Run("journal of a failed unit", func(t *testing.T) {
		r := skiffOn(t, l, "deploy", "--flake", flake, "hunits")
		wantCode(t, r, 3)
		cmd := hintCommand(t, r.stderr, "ssh ")
		if !strings.Contains(cmd, "journalctl -u demo-web.service") {
			t.Fatalf("hint %q does not read the failed unit's journal", cmd)
		}
		out, err := runHint(t, cmd)
		if err != nil {
			t.Fatal(err)
		}
		wantContains(t, "journal", out, "demo-web.service")
	})

	t.Run("unknown host key", func(t *testing.T) {
		h := l.Host("hnew")
		removeKnownHost(t, l, h)
		r := skiffOn(t, l, "deploy", "--flake", flake, "hnew")
		wantCode(t, r, 3)
		wantContains(t, "error", r.stderr, "host key of "+h.Addr+" is not known")
		scan := hintCommand(t, r.stderr, "ssh-keyscan")
		if _, err := runHint(t, scan); err != nil {
			t.Fatal(err)
		}
		// The recorded key is the host's own, as the hint asks to verify.
		verify := hintCommand(t, r.stderr, "ssh-keygen -lF")
		out, err := runHint(t, verify)
		if err != nil || !strings.Contains(out, fingerprint(t, h)) {
			t.Errorf("verification does not show the host's fingerprint %s: %v", fingerprint(t, h), err)
		}
		if out, err := sshTo(t, l, "hnew", "true"); err != nil {
			t.Fatalf("ssh after the hint: %v: %s", err, out)
		}
		wantCode(t, skiffOn(t, l, "deploy", "--flake", flake, "hnew"), 0)
	})

	t.Run("changed host key", func(t *testing.T) {
		h := l.Host("hre")
		if err := h.ChangeHostKey(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := skiffOn(t, l, "deploy", "--flake", flake, "hre")
		wantCode(t, r, 3)
		wantContains(t, "error", r.stderr, "has CHANGED")
		for _, prefix := range []string{"ssh-keygen -f", "ssh-keyscan"} {
			if _, err := runHint(t, hintCommand(t, r.stderr, prefix)); err != nil {
				t.Fatal(err)
			}
		}
		out, err := runHint(t, hintCommand(t, r.stderr, "ssh-keygen -lF"))
		if err != nil || !strings.Contains(out, fingerprint(t, h)) {
			t.Errorf("verification does not show the host's new fingerprint %s: %v", fingerprint(t, h), err)
		}
		if out, err := sshTo(t, l, "hre", "true"); err != nil {
			t.Fatalf("ssh after the hint: %v: %s", err, out)
		}
	})

	t.Run("ssh -v", func(t *testing.T) {
		if err := l.Host("hauth").SetAuthorizedKeys("root", nil); err != nil {
			t.Fatal(err)
		}
		r := skiffOn(t, l, "deploy", "--flake", flake, "hauth")
		wantCode(t, r, 3)
		cmd := hintCommand(t, r.stderr, "ssh ")
		if !strings.Contains(cmd, " -v ") {
			t.Fatalf("hint %q is not ssh -v", cmd)
		}
		// It reaches the host, passes its host key check and shows the
		// keys offered, which the host refuses.
		out, err := runHint(t, cmd+" true")
		if err == nil {
			t.Fatal("logged in without an authorized key")
		}
		wantContains(t, "ssh -v", out, "Server host key: ssh-ed25519", "Offering public key: "+l.IdentityFile(), "Permission denied")
	})
}

// shim puts a nix-store in front of the host's own on the PATH of its ssh
// sessions: it fails, with message, when its first argument is arg.
func shim(t *testing.T, h *lab.Host, arg, message string) (remove func()) {
	t.Helper()
	path := filepath.Join(h.Dir, "bin", "nix-store")
	script := "#!/bin/sh\nif [ \"$1\" = " + arg + " ]; then echo " + "'" + message + "'" + " >&2; exit 1; fi\nexec /usr/bin/nix-store \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
	}
}

// The hints for a failed copy and a full store: the copy command copies,
// nix-collect-garbage runs on the host.
func TestCopyAndGCHintsRunAsPrinted(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "hcopy"}, lab.HostSpec{Name: "hgc"}, lab.HostSpec{Name: "hgcu"}, lab.HostSpec{Name: "hgcc"})
	flake := writeFlake(t, host("hcopy", "")+host("hgc", "")+host("hgcu", `deployment.targetUser = "deploy";`)+host("hgcc", ""))

	t.Run("copy", func(t *testing.T) {
		h := l.Host("hcopy")
		undo := shim(t, h, "--import", "lab: the store refuses this copy")
		r := skiffOn(t, l, "deploy", "--flake", flake, "hcopy")
		undo()
		wantCode(t, r, 3)
		wantContains(t, "error", r.stderr, "copy to", "lab: the store refuses this copy")
		cmd := hintCommand(t, r.stderr, "NIX_SSHOPTS=")
		if strings.Contains(cmd, "ControlPath") {
			t.Errorf("the copy names the run's ControlPath: %s", cmd)
		}
		if _, err := runHint(t, cmd); err != nil {
			t.Fatal(err)
		}
		// What the hint copied is the system the deploy built.
		path := cmd[strings.LastIndex(cmd, " ")+1:]
		if out, err := h.Exec(t.Context(), "nix-store", "--check-validity", path); err != nil {
			t.Errorf("%s not on the host after the copy: %v %s", path, err, out)
		}
	})

	// The store query of hgc (root) and hgcu (deploy, through sudo) and
	// the copy to hgcc find the host's disk full: the hint is a skiff gc of
	// that host with the run's flake, ssh configuration and login.
	for _, tc := range []struct{ name, arg, msg string }{
		{"hgc", "--check-validity", "out of disk space: reading the host's store failed"},
		{"hgcu", "--check-validity", "out of disk space: reading the host's store failed"},
		{"hgcc", "--import", "out of disk space: the copy to root@hgcc filled the host's disk"},
	} {
		name := tc.name
		t.Run("gc "+name, func(t *testing.T) {
			h := l.Host(name)
			undo := shim(t, h, tc.arg, "error: writing to file: No space left on device")
			r := skiffOn(t, l, "deploy", "--flake", flake, name)
			undo()
			wantCode(t, r, 3)
			wantContains(t, "error", r.stderr, tc.msg)
			cmd := hintCommand(t, r.stderr, "skiff gc "+name+" ")
			out, err := runHint(t, skiffBinary(t)+strings.TrimPrefix(cmd, "skiff"))
			if err != nil {
				t.Fatal(err)
			}
			wantContains(t, "skiff gc", out, name)
		})
	}
}

// An evaluation error names the host and its flake attribute, and the nix
// eval the hint prints runs on Nix 2.8 and shows nix's own error.
func TestEvalHintRunsAsPrinted(t *testing.T) {
	for _, tc := range []struct {
		name, configs, msg, real string
	}{
		{"not a system", host("web1", "") + "      notasystem = { foo = 1; };\n",
			"notasystem: nixosConfigurations.notasystem is not a NixOS system", "does not provide attribute"},
		{"module error", host("web1", "") + "      broken = { config.system.build.toplevel = throw \"broken has no disk\"; };\n",
			"broken: cannot evaluate nixosConfigurations.broken.config.system.build.toplevel: error: broken has no disk", "broken has no disk"},
		{"settings error", host("web1", "") + host("broken", `deployment.targetHost = throw "broken has no address";`),
			"broken: cannot evaluate nixosConfigurations.broken.config.deployment: error: broken has no address", "broken has no address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logins := fleet.Host("web1").Logins("root")
			r := skiff(t, "deploy", "--flake", writeFlake(t, tc.configs))
			wantCode(t, r, 1)
			wantContains(t, "error", r.stderr, "skiff: error: "+tc.msg)
			if strings.Contains(r.stderr, "«string»") {
				t.Errorf("the error points into skiff's own expression:\n%s", r.stderr)
			}
			out, err := runHint(t, hintCommand(t, r.stderr, "nix "))
			if err == nil {
				t.Fatal("the hint's nix eval succeeded")
			}
			wantContains(t, "nix eval", out, tc.real)
			if strings.Contains(out, "experimental") {
				t.Errorf("the hint's nix eval lacks the experimental features:\n%s", out)
			}
			if got := fleet.Host("web1").Logins("root") - logins; got != 0 {
				t.Errorf("%d logins to web1", got)
			}
		})
	}
}

// A deployment setting of the wrong type is a usage error naming the host
// and the setting, refused before any host is touched.
func TestSettingTypeErrorsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct{ settings, want string }{
		{`deployment.targetPort = "22;id";`, `skiff: error: web1: deployment.targetPort must be an integer (a port number), not a string ("22;id")`},
		{`deployment = "oops";`, `skiff: error: web1: deployment must be an attribute set, not a string ("oops")`},
		{`deployment.tags = "web";`, `skiff: error: web1: deployment.tags must be a list of strings, not a string ("web")`},
		{`deployment.healthChecks.timeout = "10s";`, `skiff: error: web1: deployment.healthChecks.timeout must be an integer (seconds), not a string ("10s")`},
	} {
		logins := fleet.Host("web1").Logins("root")
		r := skiff(t, "deploy", "--flake", writeFlake(t, host("web1", tc.settings)+host("db1", "")))
		wantCode(t, r, 2)
		wantContains(t, "error", r.stderr, tc.want, "skiff: hint: ")
		if got := fleet.Host("web1").Logins("root") - logins; got != 0 {
			t.Errorf("%s: %d logins to web1", tc.settings, got)
		}
	}
}

// A failed build's hint shows the whole log, as printed (nix log needs the
// experimental features on Nix 2.8; nix-store --read-log does not).
func TestBuildLogHintRunsAsPrinted(t *testing.T) {
	broken := `      broken = { config = { deployment.targetHost = "fail1"; system.build.toplevel = derivation {
        name = "nixos-system-broken"; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "echo compiling the hint test; echo 'oh no: the hint test is missing a dependency' >&2; exit 1" ]; }; }; };
`
	r := skiff(t, "deploy", "broken", "--flake", writeFlake(t, broken))
	wantCode(t, r, 3)
	out, err := runHint(t, hintCommand(t, r.stderr, "nix"))
	if err != nil {
		t.Fatal(err)
	}
	wantContains(t, "log", out, "compiling the hint test", "oh no: the hint test is missing a dependency")
}
