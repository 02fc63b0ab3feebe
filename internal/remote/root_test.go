package remote

import (
	"crypto/sha1"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The host-side scripts that root a deploy's system pass shellcheck.
func TestRootScriptsPassShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("no shellcheck")
	}
	for name, script := range map[string]string{
		"query":   rooted(missingScript),
		"locked":  lockedQueryScript,
		"compare": rooted(closureScript),
		"unroot":  unrootScript,
		"lock":    lockScript,
	} {
		cmd := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

// The auto root's name, computed here, is the one nix-hash computes (and
// Nix gives an indirect root).
func TestAutoNameIsNixHash(t *testing.T) {
	if _, err := exec.LookPath("nix-hash"); err != nil {
		t.Skip("no nix-hash")
	}
	for _, id := range []string{"20261202T010203-abcd", "a", "20261202T031008-08949808"} {
		r := Root{ID: id, Path: "/nix/store/x"}
		cmd := exec.Command("nix-hash", "--type", "sha1", "--base32", "--flat", "/dev/stdin")
		cmd.Stdin = strings.NewReader(r.Link())
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.autoName(), strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: auto root name %q, nix-hash says %q", r.Link(), got, want)
		}
	}
}

// skiff_root makes the link and the auto root Nix would make for it
// (same name), with a store path that is not valid yet; skiff_unroot
// removes both. Run under dash.
func TestRootAndUnrootUnderDash(t *testing.T) {
	for _, tool := range []string{"dash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("no " + tool)
		}
	}
	dir := t.TempDir()
	roots, auto := filepath.Join(dir, "roots"), filepath.Join(dir, "auto")
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// nix-store must not touch the machine's store here.
	if err := os.WriteFile(filepath.Join(bin, "nix-store"), []byte("#!/bin/sh\necho \"$@\" >>"+filepath.Join(dir, "nix-store.log")+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const path = "/nix/store/00000000000000000000000000000000-nixos-system-x"
	run := func(script string, args ...string) {
		t.Helper()
		full := rootFuncs + "skiff_roots=" + roots + " skiff_auto=" + auto + "\n" + script
		cmd := exec.Command("dash", append([]string{"-c", full, "sh"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	root := Root{ID: "20261202T010203-abcd", Path: path}
	args, err := root.args()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(roots, "20261202T010203-abcd")
	// Here the roots are elsewhere: the auto root's name is the one of
	// this link.
	linkSum := sha1.Sum([]byte(link))
	args[2] = nix32(linkSum[:])
	run(`skiff_root "$1" "$2" "$3"`, args...)
	if got, err := os.Readlink(link); err != nil || got != path {
		t.Fatalf("root link: %q, %v", got, err)
	}
	sum := sha1.Sum([]byte(link))
	name := filepath.Join(auto, nix32(sum[:]))
	if got, err := os.Readlink(name); err != nil || got != link {
		t.Fatalf("auto root %s: %q, %v", name, got, err)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "nix-store.log")); len(log) > 0 {
		t.Errorf("skiff_root ran nix-store: %q", log)
	}
	run(`skiff_unroot "$1" "$2"`, args[0], args[2])
	for _, p := range []string{link, name} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestRootArgs(t *testing.T) {
	for _, tc := range []struct {
		root Root
		ok   bool
	}{
		{Root{}, true},
		{Root{ID: "20261202T010203-abcd", Path: "/nix/store/x"}, true},
		{Root{ID: "../lock", Path: "/nix/store/x"}, false},
		{Root{ID: "a b", Path: "/nix/store/x"}, false},
		{Root{ID: "a", Path: "relative"}, false},
	} {
		if _, err := tc.root.args(); (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.root, err)
		}
	}
}

// skiff_invalid prints the invalid paths with one nix-store, and realises
// the new system only when it is reported valid (a temporary root against
// a collection already running), reporting it missing when that fails.
// Run under dash with a fake nix-store.
func TestInvalidUnderDash(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	const top, dep, base = "/nix/store/aaaa-nixos-system-x", "/nix/store/bbbb-dep", "/nix/store/dddd-nixos-system-x"
	for _, tc := range []struct {
		name     string
		invalid  string // what --check-validity prints
		realise  int    // exit code of --realise
		want     string
		realised bool
		running  string // what the host runs (its current-system link)
		base     string // the base system of the query
	}{
		{"new system missing: no realise", top + "\n" + dep + "\n", 0, top + "\n" + dep + "\n", false, "", ""},
		{"new system there: realised", dep + "\n", 0, dep + "\n", true, "", ""},
		{"new system collected before the realise", dep + "\n", 1, dep + "\n" + top + "\n", true, "", ""},
		{"nothing missing", "", 0, "", true, "/nix/store/cccc-nixos-system-x", ""},
		{"the host runs it: no nix-store", "never asked", 0, "", false, top, ""},
		{"base there", top + "\n", 0, top + "\n", false, "", base},
		{"base missing: said alone", base + "\n" + top + "\n", 0, "base invalid\n", false, "", base},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			fake := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>%s\ncase $1 in --check-validity) printf '%s' ;; --realise) exit %d ;; esac\n", log, tc.invalid, tc.realise)
			if err := os.WriteFile(filepath.Join(dir, "nix-store"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			current := filepath.Join(dir, "current-system")
			if tc.running != "" {
				if err := os.Symlink(tc.running, current); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("dash", "-c", rootFuncs+`skiff_current=$2; skiff_invalid "$1" "$3"`, "sh", top, current, tc.base)
			cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
			cmd.Stdin = strings.NewReader(top + "\n" + dep + "\n")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("printed %q, want %q", out, tc.want)
			}
			calls, _ := os.ReadFile(log)
			want := 1
			if tc.running == top {
				want = 0
			}
			if n := strings.Count(string(calls), "--check-validity"); n != want {
				t.Errorf("%d validity checks, want %d: %q", n, want, calls)
			}
			if got := strings.Contains(string(calls), "--realise"); got != tc.realised {
				t.Errorf("realised %v, want %v: %q", got, tc.realised, calls)
			}
			if asked := strings.Contains(string(calls), "--print-invalid "+base); asked != (tc.base != "") {
				t.Errorf("base asked about %v, want %v: %q", asked, tc.base != "", calls)
			}
		})
	}
}

// The lock's companion request reads the host's state (its lines on
// descriptor 3) while it queries the store (on standard output), side by
// side, and ends once both have, with the query's exit status. Each fake
// here waits for the other to have started: run one after the other, the
// first would give up after 10 seconds. Run under dash.
func TestLockedQueryReadsStateAndStoreSideBySide(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	dir := t.TempDir()
	roots, auto, bin := filepath.Join(dir, "roots"), filepath.Join(dir, "auto"), filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// meet NAME OTHER: say NAME has started, then wait for OTHER.
	meet := `meet() { : >"` + dir + `/$1"; i=0; while [ ! -e "` + dir + `/$2" ]; do i=$((i+1)); [ "$i" -lt 1000 ] || { echo "$2 never started" >&2; exit 9; }; sleep 0.01; done; }` + "\n"
	fakes := map[string]string{
		"systemctl": meet + `case $1 in is-system-running) meet state query; echo running ;; *) echo '[]' ;; esac`,
		"nix-store": meet + `cat >/dev/null; meet query state; echo /nix/store/bbbb-dep`,
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := strings.ReplaceAll(lockedQueryScript, "skiff_roots=/run/skiff/roots", "skiff_roots="+roots)
	script = strings.ReplaceAll(script, "skiff_auto=/nix/var/nix/gcroots/auto", "skiff_auto="+auto)
	root := Root{ID: "20261202T010203-abcd", Path: "/nix/store/aaaa-nixos-system-x"}
	args, err := root.args()
	if err != nil {
		t.Fatal(err)
	}
	vals, err := os.Create(filepath.Join(dir, "vals"))
	if err != nil {
		t.Fatal(err)
	}
	defer vals.Close()
	cmd := exec.Command("dash", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Stdin = strings.NewReader("/nix/store/aaaa-nixos-system-x\n/nix/store/bbbb-dep\n")
	cmd.ExtraFiles = []*os.File{vals} // descriptor 3
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	st, err := os.ReadFile(filepath.Join(dir, "vals"))
	if err != nil {
		t.Fatal(err)
	}
	state, perr := parseState(string(st))
	if perr != nil || state.Health.State != "running" {
		t.Errorf("state on descriptor 3: %q (%+v, %v), want the system's state read", st, state.Health, perr)
	}
	if store := parseStore(string(out)); len(store.Missing) != 1 || store.Missing[0] != "/nix/store/bbbb-dep" {
		t.Errorf("store query: %q, want /nix/store/bbbb-dep missing", out)
	}
}

// The store queries' scripts under dash, with fake nix-store and df: diff's
// reads the free space, what is missing and the running system's closure
// with sizes, in sections; a root that cannot be made stops either before
// anything else is asked.
func TestStoreQueryScriptsUnderDash(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	const top, dep, cur = "/nix/store/aaaa-nixos-system-x", "/nix/store/bbbb-dep", "/nix/store/cccc-nixos-system-x"
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	bin := fakeBin(t, map[string]string{
		"nix-store": `echo "$*" >>` + log + `
case "$*" in
--check-validity*) cat >/dev/null; echo ` + dep + ` ;;
"-q --requisites ` + cur + `") echo ` + cur + `; echo ` + dep + ` ;;
"-q --size "*) shift 2; for p; do echo 1024; done ;;
--realise*) ;;
*) exit 9 ;;
esac`,
		"df": `echo "Filesystem 1024-blocks Used Available Capacity Mounted on"; echo "/dev/vda 1000 400 600 40% /nix"`,
	})
	roots := filepath.Join(dir, "roots")
	run := func(script string, args ...string) (string, string, error) {
		full := rootFuncs + "skiff_roots=" + roots + " skiff_auto=" + filepath.Join(dir, "auto") + " skiff_current=/nonexistent\n" + script
		cmd := exec.Command("dash", append([]string{"-c", full, "sh"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		cmd.Stdin = strings.NewReader(top + "\n" + dep + "\n")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return string(out), stderr.String(), err
	}
	root := Root{ID: "20261202T010203-abcd", Path: top}
	args, err := root.args()
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run(closureScript, append(args, cur)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	closure, store, err := parseCompare(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []StorePath{{cur, 1024}, {dep, 1024}}
	if d := cmp.Diff(want, closure); d != "" || store.Free != 600*1024 || len(store.Missing) != 1 || store.Missing[0] != dep {
		t.Errorf("closure %s, store %+v\n%s", d, store, out)
	}
	if got, err := os.Readlink(filepath.Join(roots, root.ID)); err != nil || got != top {
		t.Errorf("root: %q, %v", got, err)
	}
	// The roots' directory cannot be made: a file is in its way.
	if err := os.RemoveAll(roots); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(roots, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	for name, script := range map[string]string{"missing": missingScript, "closure": closureScript} {
		out, stderr, err := run(script, append(args, "")...)
		if err == nil || !strings.Contains(stderr, "cannot make the GC root "+roots+"/"+root.ID+" for "+top) || strings.Contains(out, dep) {
			t.Errorf("%s without a root: %q, %q, %v", name, out, stderr, err)
		}
	}
	if calls, _ := os.ReadFile(log); len(calls) > 0 {
		t.Errorf("nix-store ran without the root: %q", calls)
	}
}
