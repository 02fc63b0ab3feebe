// Package transport runs commands on a host through the system OpenSSH
// client, so that ~/.ssh/config, the agent, ProxyJump and known_hosts work
// as they do for "ssh HOST".
//
// One option list (Options.Args) serves both skiff's own ssh calls and
// NIX_SSHOPTS, so nix copy rides the same multiplexed connection. Host key
// checking is never turned off. Each remote argument is quoted exactly once,
// here. Failures to reach a host are classified by layer (Class). The
// commands hints print (ByHand, HintOpts, the ssh-keyscan of an unknown
// key) carry the user's -F and -o options but never the run's ControlPath,
// so they work as printed after skiff exits.
//
// A local target (Target.Local, LocalTarget: skiff deploy --local) is this
// machine: Command runs the argv itself through the same runner, with no
// ssh, no quoting and no shared connection (Fresh means nothing), and the
// hints print the command itself. Everything above (privilege through
// sudo, locks, the supervisor) works on it unchanged.
package transport
