package lab

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcAddr(t *testing.T) {
	for _, c := range []struct {
		in   string
		ip   string
		port int
	}{
		{"0200E07F:0016", "127.224.0.2", 22},
		{"0202007F:0016", "127.0.2.2", 22},
		{"00000000:0016", "0.0.0.0", 22},
		{"00000000000000000000000000000000:0016", "::", 22},
	} {
		l, ok := parseProcAddr(c.in)
		if !ok || !l.ip.Equal(net.ParseIP(c.ip)) || l.port != c.port {
			t.Errorf("parseProcAddr(%q) = %v %d %v, want %s %d", c.in, l.ip, l.port, ok, c.ip, c.port)
		}
	}
	if _, ok := parseProcAddr("zz"); ok {
		t.Error("parseProcAddr accepted garbage")
	}
}

func TestDeployIDs(t *testing.T) {
	passwd := []byte("root:x:0:0::/root:/bin/bash\nalice:x:2000:2000::/home/alice:/bin/sh\n")
	group := []byte("root:x:0:\nalice:x:2000:\nstaff:x:2001:\n")
	if uid, gid := deployIDs(passwd, group); uid != 2002 || gid != 2002 {
		t.Errorf("deployIDs = %d %d, want 2002 2002", uid, gid)
	}
	passwd = append(passwd, "deploy:x:1500:1600::/home/deploy:/bin/sh\n"...)
	if uid, gid := deployIDs(passwd, group); uid != 1500 || gid != 1600 {
		t.Errorf("deployIDs with an existing deploy = %d %d, want 1500 1600", uid, gid)
	}
}

func TestAccountEdits(t *testing.T) {
	got := withoutEntry([]byte("root:x:0:0\ndeploy:x:1:1\nbob:x:2:2\n"), "deploy")
	if got != "root:x:0:0\nbob:x:2:2\n" {
		t.Errorf("withoutEntry = %q", got)
	}
	if got := unlockRoot("root:!:19000::::::\nbob:!:1::::::\n"); got != "root:*:19000::::::\nbob:!:1::::::\n" {
		t.Errorf("unlockRoot = %q", got)
	}
	if got := Hosts(3, "web"); !reflect.DeepEqual(got, []HostSpec{{Name: "web1"}, {Name: "web2"}, {Name: "web3"}}) {
		t.Errorf("Hosts = %v", got)
	}
	if got := unescapeMountPath(`/tmp/a\040b`); got != "/tmp/a b" {
		t.Errorf("unescapeMountPath = %q", got)
	}
}

// The date stand-in shifts the machine's date by the offset in ClockOffsetFile.
func TestDateShimStepsTheWallClock(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash not installed")
	}
	data, err := assets.ReadFile("assets/date")
	if err != nil {
		t.Fatal(err)
	}
	offsetFile := filepath.Join(t.TempDir(), "clock-offset")
	script := strings.ReplaceAll(string(data), ClockOffsetFile, offsetFile)
	for _, tc := range []struct {
		offset string // "" means no file
		want   int64
	}{
		{"", 0},
		{"3600\n", 3600},
		{"-3600\n", -3600},
		{"junk\n", 0},
	} {
		os.Remove(offsetFile)
		if tc.offset != "" {
			if err := os.WriteFile(offsetFile, []byte(tc.offset), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(dash, "-c", script, "date", "+%s").Output()
		if err != nil {
			t.Fatalf("offset %q: %v", tc.offset, err)
		}
		got, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if d := got - time.Now().Unix() - tc.want; d < -5 || d > 5 {
			t.Errorf("offset %q: date says %d, %d s off the shifted time", tc.offset, got, d)
		}
	}
}
