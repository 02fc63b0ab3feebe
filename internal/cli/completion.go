package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/flake"
)

func newCompletion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script for bash, zsh or fish",
		Long: `Completion prints a script that completes skiff's commands, flags, and the
host names and @tags of the flake (evaluated once, then cached in
$XDG_CACHE_HOME/skiff until a .nix file of the flake or its flake.lock
changes).

  bash  source <(skiff completion bash)                   # in ~/.bashrc
  zsh   skiff completion zsh > "${fpath[1]}/_skiff"       # then compinit
  fish  skiff completion fish > ~/.config/fish/completions/skiff.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(c *cobra.Command, args []string) error {
			return runCompletion(c.Root(), g.stdout, args[0])
		},
	}
}

func runCompletion(root *cobra.Command, w io.Writer, shell string) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	}
	return usageError{fmt.Errorf("unknown shell %q: want bash, zsh or fish", shell)}
}

// completeHosts makes every command that takes hosts (its usage line names
// HOST) complete the flake's host names, and @tags where it takes several
// hosts; its --on flag completes the same, comma separated. Called once
// every command has been added.
func completeHosts(root *cobra.Command, g *globals) {
	if f := root.PersistentFlags().Lookup("on"); f != nil {
		_ = root.RegisterFlagCompletionFunc("on", g.completeOn)
	}
	for _, c := range root.Commands() {
		if !strings.Contains(c.Use, "HOST") {
			continue
		}
		tags := strings.Contains(c.Use, "HOST...") || strings.Contains(c.Use, "@TAG")
		if c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				hosts := g.completionHosts(c)
				return hostCandidates(hosts, args, toComplete, tags), cobra.ShellCompDirectiveNoFileComp
			}
		}
		if c.LocalFlags().Lookup("on") != nil {
			_ = c.RegisterFlagCompletionFunc("on", g.completeOn)
		}
	}
}

// completeOn completes --on's comma-separated list: the last item.
func (g *globals) completeOn(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	done, last := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	hosts := g.completionHosts(c)
	var out []string
	for _, s := range hostCandidates(hosts, strings.Split(done, ","), last, true) {
		out = append(out, done+s)
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// hostCandidates are the completions of toComplete: host names (with their
// tags as description) and, when tags is set and the word is empty or
// starts with '@', @tags (with their hosts). Names already given are left
// out.
func hostCandidates(hosts []flake.Named, given []string, toComplete string, tags bool) []string {
	seen := map[string]bool{}
	for _, a := range given {
		seen[a] = true
	}
	var out []string
	byTag := map[string][]string{}
	for _, h := range hosts {
		for _, t := range h.Tags {
			byTag[t] = append(byTag[t], h.Name)
		}
		if seen[h.Name] || !strings.HasPrefix(h.Name, toComplete) {
			continue
		}
		c := h.Name
		if len(h.Tags) > 0 {
			c += "\ttags: " + strings.Join(h.Tags, ", ")
		}
		out = append(out, c)
	}
	if tags && (toComplete == "" || strings.HasPrefix(toComplete, "@")) {
		var names []string
		for t := range byTag {
			names = append(names, t)
		}
		sort.Strings(names)
		for _, t := range names {
			if seen["@"+t] || !strings.HasPrefix("@"+t, toComplete) {
				continue
			}
			out = append(out, "@"+t+"\t"+strings.Join(byTag[t], ", "))
		}
	}
	return out
}

// completionHosts returns the flake's hosts and tags, from the cache when
// the flake has not changed since they were evaluated. A failure yields
// no candidates (completion never prints errors into the command line);
// it is visible with BASH_COMP_DEBUG_FILE.
func (g *globals) completionHosts(c *cobra.Command) []flake.Named {
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	hosts, err := g.cachedHosts(ctx)
	if err != nil {
		cobra.CompDebugln("skiff: "+err.Error(), true)
	}
	return hosts
}

// remoteCacheAge is how long the hosts of a flake that is not a local
// directory (github:..., git+https://...) are served from the cache: its
// files cannot be checked for changes.
const remoteCacheAge = 5 * time.Minute

func (g *globals) cachedHosts(ctx context.Context) ([]flake.Named, error) {
	ref, err := flake.ParseRef(g.flake)
	if err != nil {
		return nil, err
	}
	file := ""
	if dir, err := os.UserCacheDir(); err == nil {
		file = filepath.Join(dir, "skiff", hostsCacheName(ref))
	}
	if file != "" {
		if st, err := os.Stat(file); err == nil && (ref.Dir != "" || time.Since(st.ModTime()) < remoteCacheAge) {
			var hosts []flake.Named
			if b, err := os.ReadFile(file); err == nil && json.Unmarshal(b, &hosts) == nil {
				return hosts, nil
			}
		}
	}
	hosts, err := flake.Names(ctx, g.nix(g.runner()), ref)
	if err != nil {
		return nil, err
	}
	if file != "" {
		if err := writeHostsCache(file, hosts); err != nil {
			cobra.CompDebugln("skiff: cache hosts: "+err.Error(), true)
		}
	}
	return hosts, nil
}

// hostsCacheName names the cache file of a flake's hosts:
// hosts-<flake>-<content>.json, where <flake> hashes the reference and
// <content>, for a local directory, its flake.lock and the path, size and
// modification time of each .nix file in it. Any edit that can change the
// hosts or their tags names another file.
func hostsCacheName(ref flake.Ref) string {
	id := sha256.Sum256([]byte(ref.URL))
	name := "hosts-" + hex.EncodeToString(id[:8])
	if ref.Dir == "" {
		return name + ".json"
	}
	h := sha256.New()
	lock, _ := os.ReadFile(filepath.Join(ref.Dir, "flake.lock"))
	fmt.Fprintf(h, "lock %d %x\n", len(lock), sha256.Sum256(lock))
	n := 0
	_ = filepath.WalkDir(ref.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && path != ref.Dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
			return fs.SkipDir
		}
		if n++; n > 20000 {
			return fs.SkipAll // a huge tree: hash what was seen
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".nix") {
			if info, err := d.Info(); err == nil {
				fmt.Fprintf(h, "%q %d %d\n", path, info.Size(), info.ModTime().UnixNano())
			}
		}
		return nil
	})
	return name + "-" + hex.EncodeToString(h.Sum(nil)[:8]) + ".json"
}

// writeHostsCache writes the cache file atomically and removes the
// flake's older ones.
func writeHostsCache(file string, hosts []flake.Named) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(hosts)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".hosts-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	base := filepath.Base(file)
	if i := strings.LastIndex(base, "-"); i > len("hosts-") {
		old, _ := filepath.Glob(filepath.Join(dir, base[:i]+"-*.json"))
		for _, o := range old {
			if o != file {
				os.Remove(o)
			}
		}
	}
	return nil
}
