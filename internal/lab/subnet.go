package lab

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A lab uses one loopback /24, 127.0.S.0/24: host i listens on 127.0.S.(i+2):22.
const (
	minSubnet = 1
	maxSubnet = 250
)

// listener is a listening TCP socket from /proc/net/tcp{,6}.
type listener struct {
	ip   net.IP
	port int
}

// tcpListeners parses the listening sockets of /proc/net/tcp and /proc/net/tcp6.
func tcpListeners() ([]listener, error) {
	var out []listener
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("read listening sockets: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			l, ok := parseProcAddr(fields[1])
			if ok {
				out = append(out, l)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
	}
	return out, nil
}

// parseProcAddr parses "0100007F:0016" (IPv4) or the 32-hex-digit IPv6 form: the
// address is stored as 32-bit words in host (little-endian) order.
func parseProcAddr(s string) (listener, bool) {
	hostHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return listener{}, false
	}
	raw, err := hex.DecodeString(hostHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return listener{}, false
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return listener{}, false
	}
	return listener{ip: ip, port: int(port)}, true
}

// wildcardSSHListener returns a description of a socket listening on *:22, if any.
func wildcardSSHListener() (string, error) {
	ls, err := tcpListeners()
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		if l.port == 22 && l.ip.IsUnspecified() {
			return net.JoinHostPort(l.ip.String(), "22"), nil
		}
	}
	return "", nil
}

// subnetsInUse returns the S of every 127.0.S.x that something listens on.
func subnetsInUse() (map[int]bool, error) {
	ls, err := tcpListeners()
	if err != nil {
		return nil, err
	}
	used := map[int]bool{}
	for _, l := range ls {
		if v4 := l.ip.To4(); v4 != nil && v4[0] == 127 && v4[1] == 0 {
			used[int(v4[2])] = true
		}
	}
	return used, nil
}

// subnetLockDir holds one lock file per subnet; a lab holds the flock of its subnet
// while it runs in this process, so that labs started at the same time by different
// test binaries never pick the same subnet. After the process exits, the hosts'
// listeners mark the subnet as taken.
func subnetLockDir() string { return filepath.Join(os.TempDir(), "skiff-lab-subnets") }

// claimSubnet tries to take subnet s: it must be unlocked, have no listener, and
// 127.0.s.2:22 must be bindable. On success the returned file holds the lock.
func claimSubnet(s int, used map[int]bool) (*os.File, error) {
	if s < minSubnet || s > maxSubnet {
		return nil, fmt.Errorf("subnet %d is outside %d..%d", s, minSubnet, maxSubnet)
	}
	if used[s] {
		return nil, fmt.Errorf("something already listens on 127.0.%d.0/24", s)
	}
	if err := os.MkdirAll(subnetLockDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create subnet lock dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(subnetLockDir(), strconv.Itoa(s)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open subnet lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("subnet 127.0.%d.0/24 is taken by another lab", s)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.%d.2:22", s))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("subnet 127.0.%d.0/24: %w", s, err)
	}
	ln.Close()
	return f, nil
}

// pickSubnet claims a free subnet: want if it is not 0 (no other is tried), else
// prefer (the lab's previous subnet) when free, else the first free one from a random
// start.
func pickSubnet(want, prefer int) (int, *os.File, error) {
	used, err := subnetsInUse()
	if err != nil {
		return 0, nil, err
	}
	if want != 0 {
		f, err := claimSubnet(want, used)
		if err != nil {
			return 0, nil, err
		}
		return want, f, nil
	}
	if prefer != 0 {
		if f, err := claimSubnet(prefer, used); err == nil {
			return prefer, f, nil
		}
	}
	n := maxSubnet - minSubnet + 1
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		s := minSubnet + (start+i)%n
		if f, err := claimSubnet(s, used); err == nil {
			return s, f, nil
		}
	}
	return 0, nil, fmt.Errorf("no free subnet in 127.0.%d.0/24 .. 127.0.%d.0/24", minSubnet, maxSubnet)
}
