package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// A build host that can reach a target with its own ssh configuration
// copies the system there directly; one that cannot falls back to copying
// through this machine. The lab's hosts have their own /etc/ssh, so the
// build host's client configuration, key and known hosts are its own.
func TestBuildHostCopiesDirectlyWhenItCan(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "dbld"}, lab.HostSpec{Name: "dt1"}, lab.HostSpec{Name: "dt2"})
	bld, t1 := l.Host("dbld"), l.Host("dt1")

	// dbld gets a key that dt1 (not dt2) authorizes, and dt1's host key.
	execIn(t, l, "dbld", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/ssh/builder_key")
	pub := execIn(t, l, "dbld", "cat", "/etc/ssh/builder_key.pub")
	if err := t1.SetAuthorizedKeys("root", []string{l.PublicKey(), pub}); err != nil {
		t.Fatal(err)
	}
	known, err := os.ReadFile(l.KnownHosts())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(string(known), "\n") {
		if strings.HasPrefix(line, t1.Addr+" ") || strings.HasPrefix(line, l.Host("dt2").Addr+" ") {
			lines = append(lines, line)
		}
	}
	conf := fmt.Sprintf("Host %s %s\n  IdentityFile /etc/ssh/builder_key\n  UserKnownHostsFile /etc/ssh/builder_known_hosts\n", t1.Addr, l.Host("dt2").Addr)
	if err := bld.WriteFile(t.Context(), "/etc/ssh/ssh_config.d/builder.conf", []byte(conf)); err != nil {
		t.Fatal(err)
	}
	if err := bld.WriteFile(t.Context(), "/etc/ssh/builder_known_hosts", []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		t.Fatal(err)
	}

	// The targets are named by address, which both this machine (with
	// the lab's key and known hosts) and the build host can use.
	flake := writeFlake(t,
		host("dt1", fmt.Sprintf(`deployment.targetHost = %q; deployment.buildHost = "dbld";`, t1.Addr))+
			host("dt2", fmt.Sprintf(`deployment.targetHost = %q; deployment.buildHost = "dbld";`, l.Host("dt2").Addr)))
	r := skiffOn(t, l, "-o", "IdentityFile="+l.IdentityFile(), "-o", "UserKnownHostsFile="+l.KnownHosts(), "deploy", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "dt1: copy: copied directly from build host dbld",
		"dt2: copy: build host dbld cannot copy to root@"+l.Host("dt2").Addr+" itself", "copying through this machine")
	for _, h := range []string{"dt1", "dt2"} {
		if got := profileOf(t, l, h); got != "system-1-link" {
			t.Errorf("%s: profile %q", h, got)
		}
	}
	if strings.Contains(r.stderr, "dt1: copy: build host") {
		t.Errorf("dt1 fell back although its build host can reach it:\n%s", r.stderr)
	}
}
