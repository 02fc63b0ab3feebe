package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// serveCache starts Debian's nginx on a loopback port serving dir, and
// returns its URL. It is stopped when the test ends.
func serveCache(t *testing.T, dir string) string {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/nginx"); e != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("nginx is not installed (scripts/deps.sh installs nginx-light)")
			}
			t.Skip("nginx is not installed (apt-get install nginx-light)")
		}
		nginx = "/usr/sbin/nginx"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	prefix := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
master_process off;
user root;
pid %s/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
  access_log %s/access.log;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  server { listen %s; root %s; }
}
`, prefix, prefix, prefix, prefix, prefix, prefix, prefix, addr, dir)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-e", "stderr")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("nginx does not answer on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr
}

type summaryHost struct {
	Host        string `json:"host"`
	Result      string `json:"result"`
	CopiedPaths int    `json:"copied_paths"`
	CopiedBytes int64  `json:"copied_bytes"`
}

func summaryOf(t *testing.T, stdout string) map[string]summaryHost {
	t.Helper()
	out := map[string]summaryHost{}
	for _, l := range strings.Split(stdout, "\n") {
		var s struct {
			Type  string        `json:"type"`
			Hosts []summaryHost `json:"hosts"`
		}
		if json.Unmarshal([]byte(l), &s) == nil && s.Type == "summary" {
			for _, h := range s.Hosts {
				out[h.Host] = h
			}
		}
	}
	return out
}

// With --cache, every closure goes to a binary cache (served by nginx)
// once, and the hosts fetch it from there: the deployer sends almost
// nothing per host, where without the cache it sends each host the whole
// closure.
func TestCacheFanOut(t *testing.T) {
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "sec"), filepath.Join(keys, "pub")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", "skiff-test-cache-1", sec, pub).CombinedOutput(); err != nil {
		t.Fatalf("generate key: %v: %s", err, out)
	}
	pubKey, _ := os.ReadFile(pub)
	cacheDir := t.TempDir()
	url := serveCache(t, cacheDir)
	conf := fmt.Sprintf("substituters = %s\ntrusted-public-keys = %s\n", url, strings.TrimSpace(string(pubKey)))
	names := []string{"ca1", "ca2", "ca3"}
	var specs []lab.HostSpec
	for _, n := range names {
		specs = append(specs, lab.HostSpec{Name: n, ExtraNixConf: conf})
	}
	l := newLab(t, specs...)
	flake := func(gen, size int) string {
		var b strings.Builder
		for _, n := range names {
			b.WriteString(host(n, fmt.Sprintf("generation = %d; baseSize = %d;", gen, size)))
		}
		return writeFlake(t, b.String())
	}
	const size = 1 << 20

	// Without a cache: each host gets its whole closure from here.
	r := skiffOn(t, l, "deploy", "--json", "--flake", flake(1, size))
	wantCode(t, r, 0)
	without := summaryOf(t, r.stdout)

	// With the cache: one push, then the hosts substitute.
	r = skiffOn(t, l, "deploy", "--json", "--cache", "file://"+cacheDir+"?secret-key="+sec, "--flake", flake(2, size+1))
	wantCode(t, r, 0)
	wantContains(t, "events", r.stdout, "pushing 3 system(s) to the binary cache file://"+cacheDir+`"`, "pushed to the binary cache",
		"sent 0 of 3 missing path(s), 0 B; the host substituted the rest")
	if strings.Contains(r.stderr+r.stdout, sec) {
		t.Errorf("the signing key's path was printed")
	}
	with := summaryOf(t, r.stdout)
	for _, n := range names {
		t.Logf("%s: deployer sent %d bytes without the cache, %d bytes with it", n, without[n].CopiedBytes, with[n].CopiedBytes)
		if without[n].CopiedBytes < size {
			t.Errorf("%s: without the cache only %d bytes were sent", n, without[n].CopiedBytes)
		}
		if with[n].Result != "deployed" || with[n].CopiedBytes > 64<<10 {
			t.Errorf("%s: with the cache: %+v, want deployed with less than 64 KiB sent", n, with[n])
		}
	}
}
