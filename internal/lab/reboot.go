package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Reboots of lab hosts.
//
// A host asks to be rebooted with its reboot stand-in (systemctl reboot, reboot,
// shutdown -r), which writes HOSTDIR/ctl/reboot. The process that started the lab
// watches for that file and reboots the host the way Host.Stop and Host.Start do:
// every process of the host ends (the session that asked too), then the host boots
// again with a fresh /run, a new boot id (/proc/sys/kernel/random/boot_id is a
// per-boot file bind-mounted over the kernel's, inside the host only) and its boot
// default as /run/booted-system and /run/current-system. Reboots are served only
// while that process runs (the tests' lab; not a lab left running by skiff-lab up).

// rebootPoll is how often the lab looks for reboot requests.
const rebootPoll = 100 * time.Millisecond

// rebootDelay is how long a host keeps running after it asked for a reboot, so that
// the command that asked returns first, as systemctl reboot does.
const rebootDelay = 200 * time.Millisecond

// rebootWatch serves the reboot requests of a lab's hosts (Lab.reboots, set once
// by Start, stopped first by Stop).
type rebootWatch struct {
	l    *Lab
	quit chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	hold map[string]bool // hosts that stay down after a reboot
	busy map[string]bool // hosts being rebooted
	log  []string
}

func (l *Lab) watchReboots() *rebootWatch {
	w := &rebootWatch{l: l, quit: make(chan struct{}), hold: map[string]bool{}, busy: map[string]bool{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(rebootPoll)
		defer t.Stop()
		for {
			select {
			case <-w.quit:
				return
			case <-t.C:
			}
			for _, h := range l.hosts {
				if _, err := os.Stat(h.rebootRequest()); err != nil {
					continue
				}
				w.mu.Lock()
				if w.busy[h.Name] {
					w.mu.Unlock()
					continue
				}
				w.busy[h.Name] = true
				w.mu.Unlock()
				w.wg.Add(1)
				go func() {
					defer w.wg.Done()
					w.reboot(h)
				}()
			}
		}
	}()
	return w
}

// stop ends the watch and waits for reboots in progress; idempotent.
func (w *rebootWatch) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *rebootWatch) note(format string, a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, fmt.Sprintf(format, a...))
}

func (w *rebootWatch) reboot(h *Host) {
	defer func() {
		w.mu.Lock()
		w.busy[h.Name] = false
		w.mu.Unlock()
	}()
	w.note("%s reboot", h.Name)
	select {
	case <-w.quit:
		return
	case <-time.After(rebootDelay):
	}
	_ = os.Remove(h.rebootRequest())
	if err := h.Stop(); err != nil {
		h.bootLogf("reboot: stop: %v", err)
	}
	_ = os.Remove(h.rebootRequest()) // asked again while going down
	w.note("%s down", h.Name)
	w.mu.Lock()
	hold := w.hold[h.Name]
	w.mu.Unlock()
	if hold {
		h.bootLogf("reboot: the lab holds this host down (Host.HoldReboots)")
		return
	}
	select {
	case <-w.quit:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		h.bootLogf("reboot: %v", err)
		w.note("%s failed to boot", h.Name)
		return
	}
	w.note("%s up", h.Name)
}

func (h *Host) rebootRequest() string { return filepath.Join(h.Dir, "ctl", "reboot") }

func (h *Host) bootLogf(format string, a ...any) {
	f, err := os.OpenFile(h.BootLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", a...)
}

// HoldReboots makes the host stay down after its next reboots, like a machine that
// does not come back (until Start); false lets it boot again.
func (h *Host) HoldReboots(hold bool) {
	w := h.lab.reboots
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hold[h.Name] = hold
}

// BootOnce makes the host's next boot boot system (a toplevel path) instead of its
// boot default, like an entry picked by hand in the boot menu, or a boot loader that
// did not get the new entry. Later boots boot the boot default again.
func (h *Host) BootOnce(system string) error {
	if system == "" || !filepath.IsAbs(system) {
		return errors.New("boot once: want an absolute path")
	}
	dir := filepath.Join(h.Dir, "ctl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "boot-once"), []byte(system+"\n"), 0o644)
}

// RebootLog lists what the lab did for reboot requests, in order: "NAME reboot" (asked),
// "NAME down" (every process ended), "NAME up" (booted again and sshd accepts logins)
// or "NAME failed to boot".
func (l *Lab) RebootLog() []string {
	w := l.reboots
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}
