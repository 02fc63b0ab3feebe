package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

type doctorJSON struct {
	Hosts []struct {
		Host   string `json:"host"`
		Status string `json:"status"`
		Checks []struct {
			Check  string `json:"check"`
			Status string `json:"status"`
			Detail string `json:"detail"`
			Hint   string `json:"hint"`
			Class  string `json:"class"`
		} `json:"checks"`
	} `json:"hosts"`
}

// finding is one host's check as doctor --json reported it.
func finding(t *testing.T, d doctorJSON, host, check string) (status, detail, hint, class string) {
	t.Helper()
	for _, h := range d.Hosts {
		if h.Host != host {
			continue
		}
		for _, c := range h.Checks {
			if c.Check == check {
				return c.Status, c.Detail, c.Hint, c.Class
			}
		}
	}
	t.Fatalf("no %s check for %s", check, host)
	return
}

func TestDoctorNamesEachLayer(t *testing.T) {
	dropErr := lab.DropAvailable()
	if dropErr != nil && os.Getenv("CI") != "" {
		t.Fatalf("cannot drop packets in CI: %v", dropErr)
	}
	l := newLab(t,
		lab.HostSpec{Name: "dok"},
		lab.HostSpec{Name: "ddown"},
		lab.HostSpec{Name: "dauth"},
		lab.HostSpec{Name: "dkey"},
		lab.HostSpec{Name: "ddrop"},
		lab.HostSpec{Name: "dnosudo", NoSudo: true},
		lab.HostSpec{Name: "dsmall", StoreSize: 48 << 20},
	)
	if err := l.Host("ddown").StopSSHD(); err != nil {
		t.Fatal(err)
	}
	if err := l.Host("dauth").SetAuthorizedKeys("root", nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Host("dkey").ChangeHostKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	// dsmall also has a failed unit and an activation in progress.
	small := l.Host("dsmall")
	if err := small.WriteFile(t.Context(), "/run/lab-systemd/units/demo-web.service", []byte("loaded failed failed Demo web service\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Exec(t.Context(), "sh", "-c", "mkdir -p /run/nixos && flock /run/nixos/switch-to-configuration.lock sleep 60 </dev/null >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	hosts := []string{"dok", "ddown", "dauth", "dkey", "dnosudo", "dsmall", "dnx"}
	if dropErr == nil {
		undo, err := l.Host("ddrop").DropSSH()
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := undo(); err != nil {
				t.Error(err)
			}
		}()
		hosts = append(hosts, "ddrop")
	} else {
		t.Logf("not testing dropped packets: %v", dropErr)
	}
	flake := writeFlake(t, host("dok", "")+host("ddown", "")+host("dauth", "")+host("dkey", "")+host("ddrop", "")+host("dsmall", "")+
		host("dnosudo", `deployment.targetUser = "deploy";`)+host("dnx", `deployment.targetHost = "dnx.invalid";`))

	r := skiffOn(t, l, append([]string{"doctor", "--json", "--timeout", "6s", "--flake", flake}, hosts...)...)
	wantCode(t, r, 3)
	var d doctorJSON
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	if len(d.Hosts) != len(hosts) {
		t.Fatalf("%d hosts in the report, want %d", len(d.Hosts), len(hosts))
	}
	for _, h := range d.Hosts {
		want := "fail"
		if h.Host == "dok" {
			want = "ok"
		}
		if h.Status != want {
			t.Errorf("%s: status %s, want %s", h.Host, h.Status, want)
		}
	}
	for _, h := range d.Hosts {
		if h.Host != "dok" {
			continue
		}
		for _, c := range h.Checks {
			if c.Status != "ok" {
				t.Errorf("dok %s: %s %s", c.Check, c.Status, c.Detail)
			}
		}
	}

	for _, tc := range []struct {
		host, check, class string
		detail, hint       []string
		skipped            string // a later check that must be skipped
	}{
		{"ddown", "tcp", "refused", []string{"refused"}, []string{"sshd is not running"}, "auth"},
		{"dauth", "auth", "auth", []string{"authentication as root refused: key not authorized", "offered: ED25519 SHA256:"}, []string{"authorizedKeys"}, "nix"},
		{"dkey", "host-key", "hostkey", []string{"has CHANGED", "it presents ED25519 SHA256:", "line 4"},
			[]string{"ssh-keygen -f " + l.KnownHosts() + " -R " + l.Host("dkey").Addr}, "auth"},
		{"dnx", "dns", "dns", []string{"cannot resolve dnx.invalid (DNS)"}, []string{"-G dnx.invalid"}, "tcp"},
		{"dnosudo", "sudo", "sudo", []string{"deploy"}, []string{"NOPASSWD"}, "store"},
		{"dsmall", "disk", "disk", []string{"/nix/store: ", "MiB free"}, []string{"skiff gc dsmall --keep 5"}, ""},
		{"ddrop", "tcp", "timeout", []string{"timed out", "no answer"}, []string{"firewall"}, "ssh-banner"},
	} {
		if tc.host == "ddrop" && dropErr != nil {
			continue
		}
		st, detail, hint, class := finding(t, d, tc.host, tc.check)
		if st != "fail" || class != tc.class {
			t.Errorf("%s %s: %s (%s), want fail (%s): %s", tc.host, tc.check, st, class, tc.class, detail)
		}
		wantContains(t, tc.host+" "+tc.check+" detail", detail, tc.detail...)
		wantContains(t, tc.host+" "+tc.check+" hint", hint, tc.hint...)
		if tc.skipped != "" {
			if st, _, _, _ := finding(t, d, tc.host, tc.skipped); st != "skip" {
				t.Errorf("%s %s: %s after %s failed, want skip", tc.host, tc.skipped, st, tc.check)
			}
		}
	}
	for _, c := range []struct{ check, detail, hint string }{
		{"units", "failed: demo-web.service", "journalctl -u demo-web.service -n 50"},
		{"activation-lock", "held: /run/nixos/switch-to-configuration.lock", "another deploy or nixos-rebuild runs now"},
	} {
		st, detail, hint, _ := finding(t, d, "dsmall", c.check)
		if st != "warn" {
			t.Errorf("dsmall %s: %s %s, want warn", c.check, st, detail)
		}
		wantContains(t, "dsmall "+c.check, detail+"\n"+hint, c.detail, c.hint)
	}
	// The layers below the failing one are reported as passing.
	for _, c := range []struct{ host, check string }{{"dauth", "host-key"}, {"dkey", "ssh-banner"}, {"dnosudo", "nix"}, {"dnosudo", "auth"}, {"dsmall", "store"}} {
		if st, detail, _, _ := finding(t, d, c.host, c.check); st != "ok" {
			t.Errorf("%s %s: %s %s, want ok", c.host, c.check, st, detail)
		}
	}

	// The table: one row per check, a hint line per failure; exit 0 when
	// nothing fails.
	r = skiffOn(t, l, "doctor", "--flake", flake, "dok")
	wantCode(t, r, 0)
	wantContains(t, "table", r.stdout, "HOST", "CHECK", "STATUS", "DETAIL", "dok", "local-build")
	if strings.Contains(r.stdout, "hint:") {
		t.Errorf("hints without failures:\n%s", r.stdout)
	}
	r = skiffOn(t, l, "doctor", "--flake", flake, "ddown")
	wantCode(t, r, 3)
	wantContains(t, "table", r.stdout, "ddown  tcp", "fail", "hint: ddown tcp: sshd is not running")
	if n := strings.Count(r.stdout, "hint:"); n != 1 {
		t.Errorf("%d hint lines for one failure:\n%s", n, r.stdout)
	}
}

func TestDoctorRefusesBadInputBeforeTouchingHosts(t *testing.T) {
	flake := writeFlake(t, host("web1", ""))
	r := skiff(t, "doctor", "--flake", flake, "nosuch")
	wantCode(t, r, 2)
	wantContains(t, "error", r.stderr, "nosuch")
	r = skiff(t, "doctor", "--flake", flake, "web1;reboot")
	wantCode(t, r, 2)
	r = skiff(t, "doctor", "--flake", flake, "--timeout", "0s", "web1")
	wantCode(t, r, 2)
}
