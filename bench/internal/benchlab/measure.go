package benchlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A measured command runs under a reaper: the bench binary itself, started again
// with reaperEnv set. The reaper is a child subreaper, so the ssh ControlPersist
// masters that a command leaves behind (they detach from their parent) become its
// children when orphaned; it waits for them too, and its RUSAGE_CHILDREN then holds
// the CPU of the command and of every process it started.
const reaperEnv = "SKIFF_BENCH_REAPER"

// reaperWait bounds the wait for orphans after the command ended (a ControlPersist
// master that nobody closed would otherwise keep the reaper for a minute).
const reaperWait = 15 * time.Second

// Samples are one command's measurements over a bench's rounds.
type Samples struct {
	Wall, CPU, Machine []time.Duration
}

// Add records one run.
func (s *Samples) Add(u Usage) {
	s.Wall = append(s.Wall, u.Wall)
	s.CPU = append(s.CPU, u.CPU)
	s.Machine = append(s.Machine, u.Machine)
}

// Usage is what one measured command cost on this machine.
type Usage struct {
	Wall time.Duration // from its start to its end (orphans not included)
	CPU  time.Duration // user + system CPU of the command and all its descendants
	// PeakRSS is the command's own high-water mark of resident memory (VmHWM,
	// sampled every 10 ms while it runs: a lower bound).
	PeakRSS int64
	// TreeMaxRSS is ru_maxrss over the command and its descendants: the largest
	// single process of the run (an upper bound for the command's own).
	TreeMaxRSS int64
	// Machine is the CPU the whole machine spent while the command ran (from
	// /proc/stat): the deployer's and the lab hosts' (sshd, nix, the host-side
	// scripts), the proxies' and whatever else ran.
	Machine  time.Duration
	ExitCode int
	Stdout   string
	Stderr   string
}

type report struct {
	WallNS, CPUNS, PeakKB, TreeMaxKB int64
	Exit                             int
	Orphans                          string // an error reaping them, if any
}

// Measure runs argv (with env added to this process's environment) under the reaper
// and returns its usage. A non-zero exit is returned in Usage.ExitCode, not as error.
func Measure(ctx context.Context, env []string, argv ...string) (Usage, error) {
	self, err := os.Executable()
	if err != nil {
		return Usage{}, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return Usage{}, err
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, self, argv...)
	cmd.Env = append(append(os.Environ(), env...), reaperEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = []*os.File{w} // fd 3
	busyBefore := machineBusy()
	err = cmd.Start()
	w.Close()
	if err != nil {
		return Usage{}, err
	}
	var rep report
	decodeErr := json.NewDecoder(r).Decode(&rep)
	if err := cmd.Wait(); err != nil {
		return Usage{}, fmt.Errorf("reaper for %s: %w\n%s", argv[0], err, stderr.String())
	}
	machine := machineBusy() - busyBefore
	if decodeErr != nil {
		return Usage{}, fmt.Errorf("reaper for %s: no report: %w\n%s", argv[0], decodeErr, stderr.String())
	}
	if rep.Orphans != "" {
		return Usage{}, fmt.Errorf("reaper for %s: %s", argv[0], rep.Orphans)
	}
	return Usage{
		Wall: time.Duration(rep.WallNS), CPU: time.Duration(rep.CPUNS),
		PeakRSS: rep.PeakKB << 10, TreeMaxRSS: rep.TreeMaxKB << 10, Machine: machine,
		ExitCode: rep.Exit, Stdout: stdout.String(), Stderr: stderr.String(),
	}, nil
}

// Reaper runs the reaper when this process was started as one, and then exits; it
// returns at once otherwise. Main calls it before it parses the flags.
func Reaper() {
	if os.Getenv(reaperEnv) == "" {
		return
	}
	os.Unsetenv(reaperEnv)
	unix.CloseOnExec(3) // the report pipe is for this process only
	rep, err := reap(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		os.Exit(1)
	}
	out := os.NewFile(3, "report")
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func reap(argv []string) (report, error) {
	if len(argv) == 0 {
		return report{}, errors.New("no command")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return report{}, fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return report{}, err
	}
	done := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var max int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb := vmHWM(cmd.Process.Pid); kb > max {
				max = kb
			}
			select {
			case <-done:
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	waitErr := cmd.Wait()
	wall := time.Since(start)
	close(done)
	rep := report{WallNS: int64(wall), PeakKB: <-peak, Exit: cmd.ProcessState.ExitCode()}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return rep, waitErr
	}
	// The orphans: wait for every remaining descendant.
	deadline := time.Now().Add(reaperWait)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			break
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			rep.Orphans = err.Error()
			break
		}
		if pid == 0 {
			if time.Now().After(deadline) {
				rep.Orphans = "descendants still running after " + reaperWait.String()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return rep, err
	}
	rep.CPUNS = int64(time.Duration(ru.Utime.Nano() + ru.Stime.Nano()))
	rep.TreeMaxKB = ru.Maxrss
	return rep, nil
}

// vmHWM reads the peak resident set size of pid in KiB (0 once it is gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// machineBusy is the CPU time the machine has spent so far outside idle and
// iowait, summed over its CPUs (the first line of /proc/stat, in clock ticks of
// 10 ms); zero when it cannot be read.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	// user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
