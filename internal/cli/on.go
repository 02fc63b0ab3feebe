package cli

import (
	"github.com/spf13/cobra"
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
	validate := c.Args
	c.Args = func(cmd *cobra.Command, args []string) error {
		if validate == nil {
			return nil
		}
		return validate(cmd, joinOn(cmd, args, on))
	}
	runE := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return runE(cmd, joinOn(cmd, args, on))
	}
	return c
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
