// Package activate switches a host to a new system without ever locking
// the deployer out ("magic rollback").
//
// Protocol (one activation, driven by Run):
//  1. The caller holds the host's deploy lock (remote.Host.Lock, kept by
//     the host's session) and has recorded the running system and the
//     failed units (the probe, remote.State). The steps below run on the
//     host's session (remote.Session) when one is open, each as a request
//     rather than an ssh command; only the confirmation opens its own.
//  2. A supervisor (the fixed POSIX sh script Supervisor,
//     scripts/supervisor.sh) is started on the host, detached from the
//     SSH session: a transient systemd-run unit
//     where /run/systemd/system exists, otherwise setsid with no
//     controlling terminal, stdin from /dev/null and output to
//     /run/skiff/act-ID/log. It runs NEW/bin/switch-to-configuration test
//     (no generation, boot default untouched) and records the exit code.
//  3. The deployer follows the supervisor's output and state on the host
//     (Status: the request ends when the state changes, no polling) until
//     the test activation has ended, checks health (newly failed units, the
//     host's command and URL checks) and then proves it can still get in:
//     it writes the decision "commit" over a FRESH ssh connection
//     (ControlPath=none), so a lockout cannot hide behind the multiplexed
//     connection. The same command (decide.sh) then waits on the host for
//     the supervisor's final state and prints it: no polls after it. Failures
//     that prove nothing (a busy sshd dropping connections) are tried
//     again with a backoff; only a definite one (key or connection
//     refused, another host key) or failing until the window ends is a
//     lockout.
//  4. On "commit" the supervisor sets the system profile (new generation)
//     and runs NEW/bin/switch-to-configuration boot. On "rollback REASON",
//     or when no decision arrives within the window, it runs
//     OLD/bin/switch-to-configuration test, leaves the profile and the boot
//     default alone, and records why in /run/skiff/act-ID/state.
//
// Both sides count the window on a monotonic clock, never the wall clock
// (activation may step it): the supervisor on /proc/uptime, or where that
// does not exist on the sum of its sleeps; the deployer on Go's monotonic
// reading (deadlines are time.Now().Add, never rebuilt from Unix or UTC).
//
// Guarantees: the decision is taken exactly once (mkdir of
// act-ID/decided), by the deployer or by the supervisor's timeout. The
// boot default never points at an unconfirmed system. The supervisor
// survives the deployer being killed, the SSH session dying and sshd
// restarting; it does not survive a reboot, which boots the boot default,
// i.e. the previous system. The timing logic (waits, retries, deadlines)
// takes its time from package time only, so it is tested with
// testing/synctest.
package activate
