package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// keyState is "MODE USER GROUP CONTENT" of a file on a lab host, or
// "absent".
func keyState(t *testing.T, l *lab.Lab, host, path string) string {
	t.Helper()
	out, err := l.Host(host).Exec(t.Context(), "sh", "-c", `[ -e "$1" ] || { echo absent; exit 0; }; printf '%s ' "$(stat -c '%a %U %G' "$1")"; cat "$1"`, "sh", path)
	if err != nil {
		t.Fatalf("%s: stat %s: %v", host, path, err)
	}
	return strings.TrimSpace(out)
}

// TestKeys deploys secrets (deployment.keys) to a host that logs in as
// root, one that logs in as deploy through sudo -n and one whose sudo asks
// for the password, and checks where each kind lands and when: a
// pre-activation key is there when the health checks run (a post-activation
// one is not yet), a post-activation key only after a confirmed deploy,
// never after a rollback. A host whose keyFile is missing is stopped
// before anything on it changes. The secret appears nowhere but in the
// keys themselves: not in the output, the JSON, the -x trace, the history
// database or the process list.
func TestKeys(t *testing.T) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	secret := "skiffsecret-" + hex.EncodeToString(b[:])
	pw := "pw-" + hex.EncodeToString(b[:4])
	l := newLab(t, lab.HostSpec{Name: "k1"}, lab.HostSpec{Name: "k2"},
		lab.HostSpec{Name: "kpw", SudoPassword: pw, ExtraNixConf: "trusted-users = root deploy"}, lab.HostSpec{Name: "kmiss"})
	hosts := []string{"k1", "k2", "kpw", "kmiss"}
	login := map[string]string{"k2": `deployment.targetUser = "deploy";`, "kpw": `deployment.targetUser = "deploy";`}

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pre := write("pre", secret+"-pre\nsecond line")
	post := write("post", secret+"-post")
	keysOf := func(h string) string {
		if h == "kmiss" {
			return fmt.Sprintf(`deployment.keys.pre.keyFile = %q;`, filepath.Join(dir, "missing"))
		}
		return fmt.Sprintf(`deployment.keys = {
			pre = { keyFile = %q; };
			post = { keyCommand = [ "cat" %q ]; uploadAt = "post-activation"; user = "deploy"; group = "deploy"; permissions = "0440"; };
			other = { text = "not-secret-%s"; name = "other.conf"; destDir = "/run/skiff-e2e/keys"; group = "deploy"; permissions = "640"; };
		};`, pre, post, h)
	}
	// The pre-activation key is there when the checks run, the
	// post-activation one not yet.
	checks := `deployment.healthChecks = { commands = [ "test -f /run/keys/pre" "! test -e /run/keys/post" ]; timeout = 2; };`
	flakeOf := func(gen int, extra map[string]string) string {
		var configs strings.Builder
		for _, h := range hosts {
			configs.WriteString(host(h, fmt.Sprintf("generation = %d; %s %s", gen, login[h], extra[h])))
		}
		return writeFlake(t, configs.String())
	}
	history := filepath.Join(t.TempDir(), "history.db")
	var outputs []string
	ps := watchProcesses(t, secret)
	run := func(args ...string) result {
		t.Helper()
		r := skiffWithInput(t, l, pw+"\n", append([]string{"-x", "--history", history}, args...)...)
		outputs = append(outputs, r.stdout+r.stderr)
		return r
	}

	// Systems to return to, without keys.
	r := run("deploy", "--ask-sudo-password", "--json", confirm, "--flake", flakeOf(1, nil))
	wantCode(t, r, 0)

	extra := map[string]string{}
	for _, h := range hosts {
		extra[h] = keysOf(h) + checks
	}
	r = run("deploy", "--ask-sudo-password", "--json", confirm, "--flake", flakeOf(2, extra))
	wantCode(t, r, 3)
	_, sum := parseJSON(t, r.stdout)
	res := results(sum)
	for _, h := range []string{"k1", "k2", "kpw"} {
		if res[h] != "deployed" {
			t.Errorf("%s: %s, want deployed", h, res[h])
		}
		if got := profileOf(t, l, h); got != "system-2-link" {
			t.Errorf("%s: profile %s, want system-2-link", h, got)
		}
		for path, want := range map[string]string{
			"/run/keys/pre":                  "600 root root " + secret + "-pre\nsecond line",
			"/run/keys/post":                 "440 deploy deploy " + secret + "-post",
			"/run/skiff-e2e/keys/other.conf": "640 root deploy not-secret-" + h,
		} {
			if got := keyState(t, l, h, path); got != want {
				t.Errorf("%s: %s is %q, want %q", h, path, got, want)
			}
		}
		if got := labHost(t, l, h, "stat", "-c", "%a %U", "/run/skiff-e2e/keys"); got != "750 root" {
			t.Errorf("%s: the created destDir is %q, want 750 root", h, got)
		}
		if left := labHost(t, l, h, "sh", "-c", "ls -A /run/keys /run/skiff-e2e/keys | grep skiff-key || true"); left != "" {
			t.Errorf("%s: temporary files left: %s", h, left)
		}
	}
	// The host whose keyFile is missing: stopped before anything changed.
	if res["kmiss"] != "failed" {
		t.Errorf("kmiss: %s, want failed", res["kmiss"])
	}
	wantContains(t, "stderr", r.stderr, `skiff: error: kmiss: key "pre": keyFile `+filepath.Join(dir, "missing")+`: no such file or directory`)
	if got := profileOf(t, l, "kmiss"); got != "system-1-link" {
		t.Errorf("kmiss: profile %s, want system-1-link (untouched)", got)
	}
	if got := keyState(t, l, "kmiss", "/run/keys"); got != "absent" {
		t.Errorf("kmiss: /run/keys is %q, want absent", got)
	}

	// A rolled back deploy writes no post-activation key.
	os.WriteFile(post, []byte(secret+"-post-v3"), 0o600)
	delete(extra, "kmiss")
	extra["k2"] = keysOf("k2") // its post-activation key exists now
	extra["k1"] = keysOf("k1") + `deployment.healthChecks = { commands = [ "false" ]; timeout = 1; };`
	r = run("deploy", "--ask-sudo-password", "--json", confirm, "--flake", flakeOf(3, extra), "k1", "k2")
	wantCode(t, r, 4)
	_, sum = parseJSON(t, r.stdout)
	if res := results(sum); res["k1"] != "rolled back" || res["k2"] != "deployed" {
		t.Errorf("results %v, want k1 rolled back, k2 deployed", res)
	}
	if got := keyState(t, l, "k1", "/run/keys/post"); got != "440 deploy deploy "+secret+"-post" {
		t.Errorf("k1: the post-activation key was written by a rolled back deploy: %q", got)
	}
	if got := keyState(t, l, "k2", "/run/keys/post"); got != "440 deploy deploy "+secret+"-post-v3" {
		t.Errorf("k2: the post-activation key is %q after a confirmed deploy", got)
	}

	// A host already up to date still gets its keys (they change without
	// the system changing).
	os.WriteFile(pre, []byte(secret+"-pre-v3"), 0o600)
	r = run("deploy", "--ask-sudo-password", "--json", confirm, "--flake", flakeOf(3, extra), "k2")
	wantCode(t, r, 0)
	_, sum = parseJSON(t, r.stdout)
	if res := results(sum); res["k2"] != "up to date" {
		t.Errorf("results %v, want k2 up to date", res)
	}
	if got := keyState(t, l, "k2", "/run/keys/pre"); got != "600 root root "+secret+"-pre-v3" {
		t.Errorf("k2: up to date, /run/keys/pre is %q", got)
	}
	os.WriteFile(pre, []byte(secret+"-pre\nsecond line"), 0o600)

	// upload-keys alone writes both kinds, and changes nothing else.
	for _, h := range []string{"k1", "kpw"} {
		labHost(t, l, h, "rm", "-f", "/run/keys/pre", "/run/keys/post")
	}
	before := profileOf(t, l, "k1")
	r = run("upload-keys", "--ask-sudo-password", "--json", "--flake", flakeOf(3, extra), "--on", "k1,kpw")
	wantCode(t, r, 0)
	var up struct {
		Hosts []struct {
			Host string
			Keys []struct{ Name, Path, UploadAt string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil || len(up.Hosts) != 2 || len(up.Hosts[0].Keys) != 3 {
		t.Errorf("upload-keys --json: %v: %+v", err, up)
	}
	for _, h := range []string{"k1", "kpw"} {
		if got := keyState(t, l, h, "/run/keys/pre"); got != "600 root root "+secret+"-pre\nsecond line" {
			t.Errorf("%s: after upload-keys /run/keys/pre is %q", h, got)
		}
		if got := keyState(t, l, h, "/run/keys/post"); got != "440 deploy deploy "+secret+"-post-v3" {
			t.Errorf("%s: after upload-keys /run/keys/post is %q", h, got)
		}
	}
	if got := profileOf(t, l, "k1"); got != before {
		t.Errorf("upload-keys changed k1's profile: %s, was %s", got, before)
	}
	// A host whose key cannot be read fails alone.
	extra["k2"] = `deployment.keys.x.keyCommand = [ "sh" "-c" "echo leaked-stdout; echo leaked-stderr >&2; exit 7" ];`
	r = run("upload-keys", "--flake", flakeOf(3, extra), "k1", "k2")
	wantCode(t, r, 3)
	wantContains(t, "stderr", r.stderr, `skiff: error: k2: key "x": keyCommand "sh -c 'echo leaked-stdout; echo leaked-stderr >&2; exit 7'" exited with 7`)
	if strings.Contains(strings.ReplaceAll(r.stdout+r.stderr, "echo leaked", ""), "leaked") {
		t.Errorf("the keyCommand's output is shown:\n%s", r.stderr)
	}
	wantContains(t, "stdout", r.stdout, "k1", "written", "k2", "error")

	// Bad names and paths: usage errors before any host is touched.
	for _, bad := range []string{
		`deployment.keys.x = { text = "a"; destDir = "/run/../etc"; };`,
		`deployment.keys.x = { text = "a"; destDir = "run/keys"; };`,
		`deployment.keys.x = { text = "a"; name = "../x"; };`,
		`deployment.keys."a b" = { text = "a"; };`,
		`deployment.keys.x = { text = "a"; user = "root\nx"; };`,
		`deployment.keys.x = { text = "a"; permissions = "0999"; };`,
	} {
		for _, cmd := range []string{"deploy", "upload-keys"} {
			r := run(cmd, "--flake", flakeOf(4, map[string]string{"k1": bad}), "k1")
			wantCode(t, r, 2)
			wantContains(t, "stderr", r.stderr, "skiff: error: k1: deployment.keys.")
		}
	}
	if got := profileOf(t, l, "k1"); got != before {
		t.Errorf("a refused deploy changed k1's profile: %s, was %s", got, before)
	}

	// dry-activate writes no key; boot (like switch and test) writes them.
	extra["k1"] = `deployment.keys.dry.text = "dry";`
	r = run("deploy", "--mode", "dry-activate", "--flake", flakeOf(5, extra), "k1")
	wantCode(t, r, 0)
	if got := keyState(t, l, "k1", "/run/keys/dry"); got != "absent" {
		t.Errorf("dry-activate wrote a key: %q", got)
	}
	r = run("deploy", "--mode", "boot", "--flake", flakeOf(5, extra), "k1")
	wantCode(t, r, 0)
	if got := keyState(t, l, "k1", "/run/keys/dry"); got != "600 root root dry" {
		t.Errorf("after --mode boot /run/keys/dry is %q", got)
	}

	// The secret appears nowhere else.
	if seen := ps(); len(seen) > 0 {
		t.Errorf("the secret appeared in the process list:\n%s", strings.Join(seen, "\n"))
	}
	for i, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("run %d: the secret appears in skiff's output, JSON or trace", i+1)
		}
	}
	files, _ := filepath.Glob(history + "*")
	if len(files) == 0 {
		t.Error("no history database")
	}
	for _, f := range filesContaining(t, filepath.Dir(history), secret) {
		t.Errorf("the secret is in the history: %s", f)
	}
	// Nor in a host's files outside the keys (the supervisors' logs).
	for _, h := range []string{"k1", "k2", "kpw"} {
		out, err := l.Host(h).ExecInput(t.Context(), strings.NewReader(secret+"\n"), "grep", "-rlF", "-D", "skip", "-f", "-", "/run")
		var ee *lab.ExecError
		if err != nil && (!errors.As(err, &ee) || ee.ExitCode != 1) {
			t.Errorf("grep %s: %v", h, err)
		}
		for _, f := range strings.Fields(out) {
			if f != "/run/keys/pre" && f != "/run/keys/post" {
				t.Errorf("the secret is in %s:%s", h, f)
			}
		}
	}
}

// A nix-darwin host gets its keys the same way: pre-activation keys before
// its activation (a health check sees them), post-activation keys after.
func TestKeysOnDarwin(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "kmac", Darwin: true})
	keys := `deployment.keys = { pre.text = "pre"; post = { text = "post"; uploadAt = "post-activation"; }; };
		deployment.healthChecks = { commands = [ "test -f /run/keys/pre" "! test -e /run/keys/post" ]; timeout = 2; };`
	r := skiffOn(t, l, "deploy", "--flake", writeMixedFlake(t, "", mac("kmac", "generation = 1; "+keys)))
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "kmac: activate: writing 1 pre-activation key(s): /run/keys/pre",
		"kmac: activate: writing 1 post-activation key(s): /run/keys/post")
	for path, want := range map[string]string{"/run/keys/pre": "600 root root pre", "/run/keys/post": "600 root root post"} {
		if got := keyState(t, l, "kmac", path); got != want {
			t.Errorf("%s is %q, want %q", path, got, want)
		}
	}
}
