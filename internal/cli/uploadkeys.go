package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/keys"
	"github.com/skiffdeploy/skiff/internal/remote"
)

type uploadKeysOptions struct {
	targetUser string
	parallel   int
	json       bool
	askSudo    bool
}

func newUploadKeys(g *globals) *cobra.Command {
	var o uploadKeysOptions
	c := &cobra.Command{
		Use:   "upload-keys [HOST...]",
		Short: "Write the hosts' deployment.keys without deploying",
		Long: `Upload-keys writes each host's secrets (deployment.keys, colmena's schema),
pre-activation and post-activation keys alike, without building or
activating anything. Every selected host's keys are read on this machine
first (text, keyFile, keyCommand; a keyCommand has ` + keys.CommandTimeout.String() + `); a host whose
keys cannot all be read is not touched. Each host's keys travel on the
standard input of one ssh command and are written as root (sudo for
another login user), each to a temporary file in its destDir, then given
its user, group and permissions and renamed into place, under the host's
deploy lock (a host a deploy holds is not touched). Contents are never
printed, logged or recorded.

` + exitCodeHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUploadKeys(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root); a user other than root uses sudo -n")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "write to at most `N` hosts at once")
	f.BoolVar(&o.json, "json", false, "print the result as JSON (key names and paths, never contents)")
	f.BoolVar(&o.askSudo, "ask-sudo-password", false, "ask once for the sudo password of the login user and give it to sudo on each host whose sudo asks for it")
	return withOn(c)
}

// uploadedKey is one key written (the JSON form is stable; no content).
type uploadedKey struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	UploadAt string `json:"uploadAt"`
}

// uploadResult is one host's outcome (the JSON form is stable).
type uploadResult struct {
	Host  string        `json:"host"`
	Keys  []uploadedKey `json:"keys"`
	Error string        `json:"error,omitempty"`
	err   error
}

func runUploadKeys(ctx context.Context, g *globals, o uploadKeysOptions, selectors []string) error {
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	var password string
	askPassword := func() (err error) {
		if o.askSudo {
			password, err = readSudoPassword(g)
		}
		return err
	}
	evaluated, all, closeAll, err := evaluatedConns(ctx, g, o.targetUser, selectors, askPassword)
	if err != nil {
		return err
	}
	defer closeAll()
	// Every host's keys are read before any host is touched.
	run := g.runner()
	results := make([]uploadResult, len(evaluated))
	read := make([][]keys.Key, len(evaluated))
	var hosts []*remote.Host
	var index []int
	for i, h := range evaluated {
		results[i] = uploadResult{Host: h.Name, Keys: []uploadedKey{}}
		ks, err := keys.Read(ctx, run, h.Name, h.Deployment.Keys)
		if err != nil {
			results[i].err = err
			continue
		}
		read[i] = ks
	}
	for i := range evaluated {
		if results[i].err == nil && len(read[i]) > 0 {
			all[i].Password = password
			hosts = append(hosts, all[i])
			index = append(index, i)
		}
	}
	eachHost(hosts, o.parallel, func(j int, h *remote.Host) {
		i := index[j]
		// Under the host's deploy lock, like a deploy's keys: never in the
		// middle of a deploy (which waits for this one). One session for
		// the lock and the keys.
		sess, err := h.OpenSession(ctx)
		if err != nil {
			results[i].err = err
			return
		}
		defer sess.Close()
		lock, err := h.Lock(ctx, fleet.LockOwner(remote.OpUploadKeys), false)
		if err != nil {
			results[i].err = err
			return
		}
		defer lock.Release()
		if err := h.WriteKeys(ctx, read[i]); err != nil {
			results[i].err = err
			return
		}
		for _, k := range read[i] {
			results[i].Keys = append(results[i].Keys, uploadedKey{Name: k.Name, Path: k.Path(), UploadAt: k.UploadAt})
		}
	})
	for i := range results {
		if results[i].err != nil {
			results[i].Error = results[i].err.Error()
		}
	}
	if o.json {
		if err := writeHosts(g.stdout, results); err != nil {
			return err
		}
	} else {
		printUploads(g.stdout, results)
	}
	err = hostsFailed(g, results, func(r uploadResult) error { return r.err })
	if ctx.Err() != nil {
		return exitError{ExitInterrupted}
	}
	return err
}

func printUploads(w io.Writer, results []uploadResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tKEYS\tRESULT")
	for _, r := range results {
		switch {
		case r.err != nil:
			fmt.Fprintf(tw, "%s\t-\terror\n", r.Host)
		case len(r.Keys) == 0:
			fmt.Fprintf(tw, "%s\t-\tno keys\n", r.Host)
		default:
			var paths []string
			for _, k := range r.Keys {
				paths = append(paths, k.Path)
			}
			fmt.Fprintf(tw, "%s\t%s\twritten\n", r.Host, strings.Join(paths, ","))
		}
	}
	tw.Flush()
}
