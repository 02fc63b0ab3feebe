package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
)

// withOn gives c the --on flag every command that names hosts shares:
// its hosts (names, globs and @tags, comma separated) join the command's
// host arguments, ahead of a "--" when the command has one, before the
// argument checks and runX see them. It returns c.
func withOn(c *cobra.Command) *cobra.Command {
	var on []string
	c.Flags().StringSliceVar(&on, "on", nil, "select hosts: `NAMES`, globs and @tags, comma separated (the same as host arguments)")
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[namesHosts] = "true"
	// The flake references among the host arguments are read once: the
	// first read takes the fragment off --flake.
	var hosts []string
	var read error
	done := false
	hostsOf := func(cmd *cobra.Command, args []string) ([]string, error) {
		if !done {
			hosts, read = flakeHosts(cmd, joinOn(cmd, args, on))
			done = true
		}
		return hosts, read
	}
	validate := c.Args
	c.Args = func(cmd *cobra.Command, args []string) error {
		hosts, err := hostsOf(cmd, args)
		if err != nil || validate == nil {
			return err
		}
		return validate(cmd, hosts)
	}
	runE := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		hosts, err := hostsOf(cmd, args)
		if err != nil {
			return err
		}
		return runE(cmd, hosts)
	}
	return c
}

// flakeHosts reads the host arguments written as flake references, the
// way nixos-rebuild (--flake .#web1) and deploy-rs (deploy .#web1) take
// them: FLAKE#SELECTOR gives the flake and a host selector, a flake alone
// (".", a path, a URL) the flake and every host. --flake may carry a
// fragment too. The flake so given becomes --flake's value; two different
// flakes are refused. Host arguments after "--" are left alone.
func flakeHosts(cmd *cobra.Command, args []string) ([]string, error) {
	flag := cmd.Flag("flake")
	if flag == nil {
		return args, nil
	}
	var named, from string // the flake named, and where
	var out []string
	// take takes REF[#SELECTOR], named where.
	take := func(arg, where string) error {
		ref, sel, _ := strings.Cut(arg, "#")
		if ref == "" {
			ref = "."
		}
		if named != "" && !sameFlake(named, ref) {
			return fault.New("", fault.Usage, "name one flake: --flake PATH, or FLAKE#HOST arguments with the same FLAKE",
				"two flakes: %s (%s) and %s (%s)", named, from, ref, where)
		}
		named, from = ref, where
		if sel != "" {
			out = append(out, sel)
		}
		return nil
	}
	if v := flag.Value.String(); strings.Contains(v, "#") {
		if err := take(v, "--flake"); err != nil {
			return nil, err
		}
	} else if flag.Changed {
		named, from = v, "--flake"
	}
	n := len(args)
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		n = len(args) - (len(cmd.Flags().Args()) - dash)
	}
	for i, a := range args {
		if i >= n || !flakeLike(a) {
			out = append(out, a)
			continue
		}
		if err := take(a, fmt.Sprintf("argument %q", a)); err != nil {
			return nil, err
		}
	}
	if named != "" && named != flag.Value.String() {
		if err := flag.Value.Set(named); err != nil {
			return nil, err
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// flakeLike reports whether a host argument is a flake reference: it has
// a fragment (#), or is "." or a path or URL (a host name, glob or tag
// has no '/' or ':').
func flakeLike(a string) bool {
	return strings.Contains(a, "#") || a == "." || strings.ContainsAny(a, "/:")
}

// sameFlake reports whether two flake references name the same flake: a
// local path the same directory.
func sameFlake(a, b string) bool {
	if a == b {
		return true
	}
	if flake.LocalRef(a) && flake.LocalRef(b) {
		x, errA := filepath.Abs(a)
		y, errB := filepath.Abs(b)
		return errA == nil && errB == nil && x == y
	}
	return false
}

// namesHosts is the annotation withOn sets on the commands that name hosts.
const namesHosts = "skiff-names-hosts"

// joinOn puts the --on hosts after the host arguments: before "--" when
// there is one (the arguments after it are not hosts), else at the end.
func joinOn(cmd *cobra.Command, args, on []string) []string {
	if len(on) == 0 {
		return args
	}
	dash := cmd.ArgsLenAtDash()
	if dash < 0 || dash > len(args) {
		dash = len(args)
	}
	out := make([]string, 0, len(args)+len(on))
	out = append(out, args[:dash]...)
	out = append(out, on...)
	return append(out, args[dash:]...)
}

// splitDash separates a command's host arguments (args as withOn passes
// them) from the arguments after "--"; ok is false when there is no "--".
func splitDash(cmd *cobra.Command, args []string) (hosts, rest []string, ok bool) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 {
		return args, nil, false
	}
	n := len(cmd.Flags().Args()) - dash // the arguments after "--"
	return args[:len(args)-n], args[len(args)-n:], true
}
