package remote

import (
	"context"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// Every free-space figure skiff reads on a host comes from one line of
// "df -Pk" (root.sh's skiff_dfline for the store's filesystem), read by
// parseDf; every hint for a host short of space is DiskHint with a
// GCCommand.

// parseDf reads one line of df -Pk: Filesystem 1024-blocks Used
// Available Capacity Mounted-on. Size and Free are -1 when unknown.
func parseDf(line string) Disk {
	d := Disk{Size: -1, Free: -1}
	f := strings.Fields(line)
	if len(f) < 6 {
		return d
	}
	size, err1 := strconv.ParseInt(f[1], 10, 64)
	free, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return d
	}
	return Disk{Device: f[0], Mount: strings.Join(f[5:], " "), Size: size * 1024, Free: free * 1024}
}

// StoreFree reads the free bytes of the filesystem holding the host's
// store (-1 when df says nothing), without privileges.
func (h *Host) StoreFree(ctx context.Context) (int64, error) {
	res, err := h.run(ctx, "read free space", transport.Exec{Argv: []string{"sh", "-c", rootFuncs + "skiff_df"}})
	if err != nil {
		return -1, err
	}
	return parseStore(string(res.Stdout)).Free, nil
}

// GCCommand is the skiff gc command line a hint prints, runnable as
// printed after the run: the run's flake, the ssh options the user gave
// (-F, -o) and the login when --target-user chose it.
type GCCommand struct {
	Flake string // the flake's URL as given
	SSH   transport.Options
	User  string // --target-user; empty when the flake decides
	Keep  int    // generations to keep
}

// For is the command for host.
func (g GCCommand) For(host string) string {
	argv := []string{"skiff", "gc", host, "--keep", strconv.Itoa(g.Keep), "--flake", g.Flake}
	argv = append(argv, g.SSH.UserArgs()...)
	if g.User != "" {
		argv = append(argv, "--target-user", g.User)
	}
	return command.Join(argv)
}

// DiskHint says how to free space on a host whose store lacks room.
func (g GCCommand) DiskHint(host string) string {
	return "free space on the host: run \"" + g.For(host) + "\" to delete old generations and collect garbage"
}
