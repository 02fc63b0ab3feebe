package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
	"github.com/skiffdeploy/skiff/internal/ui"
)

// fleetFlake is n hosts f01..fNN: f01-f10 tagged web, the rest db; extra
// adds mkSystem arguments per host.
func fleetFlake(t *testing.T, n, gen int, extra map[string]string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("f%02d", i)
		tag := "web"
		if i > 10 {
			tag = "db"
		}
		b.WriteString(host(name, fmt.Sprintf(`generation = %d; deployment.tags = [ %q ]; %s`, gen, tag, extra[name])))
	}
	return writeFlake(t, b.String())
}

// parseJSON reads skiff's --json stream.
func parseJSON(t *testing.T, out string) ([]ui.EventJSON, ui.SummaryJSON) {
	t.Helper()
	var events []ui.EventJSON
	var sum ui.SummaryJSON
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var probe struct{ Type string }
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			t.Fatalf("stdout line is not JSON: %q", sc.Text())
		}
		switch probe.Type {
		case "summary":
			json.Unmarshal(sc.Bytes(), &sum)
		case "phase", "output":
			var e ui.EventJSON
			json.Unmarshal(sc.Bytes(), &e)
			if e.Time == "" || e.Phase == "" {
				t.Errorf("event lacks time or phase: %s", sc.Text())
			}
			events = append(events, e)
		default:
			t.Errorf("unknown type %q", probe.Type)
		}
	}
	if sum.Type != "summary" {
		t.Fatalf("no summary object in:\n%s", out)
	}
	return events, sum
}

func results(sum ui.SummaryJSON) map[string]string {
	m := map[string]string{}
	for _, h := range sum.Hosts {
		m[h.Host] = h.Result
	}
	return m
}

func hostsWith(sum ui.SummaryJSON, result string) []string {
	var hs []string
	for _, h := range sum.Hosts {
		if h.Result == result {
			hs = append(hs, h.Host)
		}
	}
	sort.Strings(hs)
	return hs
}

func TestFleetOfTwenty(t *testing.T) {
	specs := lab.Hosts(20, "f")
	for i := range specs {
		specs[i].Name = fmt.Sprintf("f%02d", i+1)
	}
	l := newLab(t, specs...)
	logins := func() int {
		n := 0
		for _, h := range l.Hosts() {
			n += h.Logins("root")
		}
		return n
	}

	first := int(unbuilt())
	t.Run("all hosts in one run, one evaluation, one build", func(t *testing.T) {
		before := logins()
		r := skiffOn(t, l, "-x", "deploy", "--json", "--flake", fleetFlake(t, 20, first, nil))
		wantCode(t, r, 0)
		_, sum := parseJSON(t, r.stdout)
		if got := hostsWith(sum, "deployed"); len(got) != 20 {
			t.Errorf("deployed %d hosts, want 20: %v", len(got), results(sum))
		}
		if n := strings.Count(r.stderr, " eval --json "); n != 1 {
			t.Errorf("%d nix evaluations, want 1", n)
		}
		if n := strings.Count(r.stderr, " build --json "); n != 1 {
			t.Errorf("%d nix builds, want 1", n)
		}
		if got := logins() - before; got != 20 {
			t.Errorf("%d ssh logins for 20 hosts, want 20 (one per host)", got)
		}
		for _, h := range sum.Hosts {
			if h.NewGeneration != 1 || h.DurationMS <= 0 || h.PhasesMS["copy"] <= 0 || h.PhasesMS["activate"] <= 0 {
				t.Errorf("summary of %s lacks generation or durations: %+v", h.Host, h)
			}
		}
	})

	t.Run("no-op redeploy copies and activates nothing", func(t *testing.T) {
		r := skiffOn(t, l, "-x", "deploy", "--json", "--flake", fleetFlake(t, 20, first, nil))
		wantCode(t, r, 0)
		// The systems are built already: no nix build runs.
		if n := strings.Count(r.stderr, " build --json "); n != 0 {
			t.Errorf("%d nix builds, want none", n)
		}
		wantContains(t, "events", r.stdout, "20 system(s) built already")
		events, sum := parseJSON(t, r.stdout)
		if got := hostsWith(sum, "up to date"); len(got) != 20 {
			t.Errorf("%d hosts up to date, want 20: %v", len(got), results(sum))
		}
		for _, e := range events {
			if e.Phase == "copy" || e.Phase == "activate" {
				t.Errorf("no-op redeploy: %+v", e)
			}
		}
	})

	t.Run("selection by name, glob and tag", func(t *testing.T) {
		flake := fleetFlake(t, 20, 2, nil)
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"f03"}, []string{"f03"}},
			{[]string{"f1?"}, []string{"f10", "f11", "f12", "f13", "f14", "f15", "f16", "f17", "f18", "f19"}},
			{[]string{"--on", "f01,@db"}, []string{"f01", "f11", "f12", "f13", "f14", "f15", "f16", "f17", "f18", "f19", "f20"}},
			{[]string{"f2*", "@web", "--on", "f05"}, []string{"f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10", "f20"}},
		} {
			r := skiffOn(t, l, append([]string{"deploy", "--json", "--mode", "dry-activate", "--flake", flake}, tc.args...)...)
			wantCode(t, r, 0)
			_, sum := parseJSON(t, r.stdout)
			var got []string
			for _, h := range sum.Hosts {
				got = append(got, h.Host)
			}
			sort.Strings(got)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("%v selected %v, want %v", tc.args, got, tc.want)
			}
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"@nosuch"}, `no host has tag @nosuch`},
			{[]string{"x*"}, `no host matches "x*"`},
			{[]string{"--on", "f01,f99"}, `unknown host "f99"`},
		} {
			before := logins()
			r := skiffOn(t, l, append([]string{"deploy", "--flake", flake}, tc.args...)...)
			wantCode(t, r, 2)
			wantContains(t, "error", r.stderr, "skiff: error: "+tc.want, "skiff: hint: known")
			if logins() != before {
				t.Errorf("%v: a host was logged into", tc.args)
			}
		}
	})

	t.Run("one dead host among twenty", func(t *testing.T) {
		if err := l.Host("f07").StopSSHD(); err != nil {
			t.Fatal(err)
		}
		defer l.Host("f07").StartSSHD(t.Context())
		r := skiffOn(t, l, "deploy", "--json", "--flake", fleetFlake(t, 20, 3, nil))
		wantCode(t, r, 3)
		_, sum := parseJSON(t, r.stdout)
		if got := hostsWith(sum, "deployed"); len(got) != 19 {
			t.Errorf("deployed %d hosts, want the 19 live ones: %v", len(got), results(sum))
		}
		for _, h := range sum.Hosts {
			if h.Host == "f07" && (h.Result != "failed" || h.ErrorClass != "refused" || !strings.Contains(h.Hint, "sshd is not running")) {
				t.Errorf("dead host: %+v", h)
			}
		}
		if sum.ExitCode != 3 {
			t.Errorf("summary exit code %d", sum.ExitCode)
		}
		wantContains(t, "error", r.stderr, "skiff: error: f07: connection to root@f07 refused")
	})

	t.Run("canary failure stops the run", func(t *testing.T) {
		bad := map[string]string{"f01": "activationFails = true;"}
		r := skiffOn(t, l, "deploy", "--json", "--canary", "2", "f0*", "--flake", fleetFlake(t, 20, 4, bad))
		wantCode(t, r, 4)
		_, sum := parseJSON(t, r.stdout)
		res := results(sum)
		if res["f01"] != "rolled back" || res["f02"] != "deployed" {
			t.Errorf("canaries: f01 %q, f02 %q", res["f01"], res["f02"])
		}
		if got := hostsWith(sum, "skipped"); len(got) != 7 {
			t.Errorf("skipped %v, want the 7 hosts after the canaries", got)
		}
		for _, h := range sum.Hosts {
			if h.Result == "skipped" && !strings.Contains(h.Note, "canary failed") {
				t.Errorf("skipped host %s without the reason: %+v", h.Host, h)
			}
		}
	})

	t.Run("critical hosts go last, and only after the rest succeeded", func(t *testing.T) {
		crit := map[string]string{"f01": "deployment.critical = true;"}
		r := skiffOn(t, l, "deploy", "--json", "f01", "f02", "f03", "--flake", fleetFlake(t, 20, 5, crit))
		wantCode(t, r, 0)
		events, _ := parseJSON(t, r.stdout)
		lastOther, firstCritical := -1, -1
		for i, e := range events {
			if e.Host != "f01" && e.Phase == "done" {
				lastOther = i
			}
			if e.Host == "f01" && (e.Phase == "copy" || e.Phase == "activate") && firstCritical < 0 {
				firstCritical = i
			}
		}
		if firstCritical < lastOther {
			t.Errorf("critical f01 started (event %d) before the others finished (event %d)", firstCritical, lastOther)
		}

		crit["f02"] = "activationFails = true;"
		r = skiffOn(t, l, "deploy", "--json", "f01", "f02", "f03", "--flake", fleetFlake(t, 20, 6, crit))
		wantCode(t, r, 4)
		_, sum := parseJSON(t, r.stdout)
		if res := results(sum); res["f01"] != "skipped" || res["f02"] != "rolled back" || res["f03"] != "deployed" {
			t.Errorf("results %v: want f01 skipped, f02 rolled back, f03 deployed", res)
		}
	})

	t.Run("fail-fast skips hosts not yet started", func(t *testing.T) {
		bad := map[string]string{"f01": "activationFails = true;"}
		r := skiffOn(t, l, "deploy", "--json", "--fail-fast", "-p", "1", "f01", "f02", "f03", "--flake", fleetFlake(t, 20, 7, bad))
		wantCode(t, r, 4)
		_, sum := parseJSON(t, r.stdout)
		if res := results(sum); res["f01"] != "rolled back" || res["f02"] != "skipped" || res["f03"] != "skipped" {
			t.Errorf("results %v", res)
		}
	})
}

func TestSudoPasswordIsAskedOnceAndNeverShown(t *testing.T) {
	const pw = "s3cret-horse"
	l := newLab(t,
		lab.HostSpec{Name: "pa", SudoPassword: pw, ExtraNixConf: "trusted-users = root deploy"},
		lab.HostSpec{Name: "pb", SudoPassword: pw, ExtraNixConf: "trusted-users = root deploy"})
	flake := writeFlake(t, host("pa", "")+host("pb", ""))

	r := skiffOn(t, l, "deploy", "--target-user", "deploy", "--flake", flake)
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "sudo on the host wants a password", "--ask-sudo-password")

	r = skiffWithInput(t, l, pw+"\n", "-x", "deploy", "--ask-sudo-password", "--target-user", "deploy", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "pa", "pb", "deployed")
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Error("the sudo password appears in skiff's output")
	}
	if got := profileOf(t, l, "pa"); got != "system-1-link" {
		t.Errorf("profile %q", got)
	}

	r = skiffWithInput(t, l, "wrong\n", "deploy", "--ask-sudo-password", "--target-user", "deploy", "--flake", writeFlake(t, host("pa", "generation = 2;")))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "sudo on the host refused the password")
}
