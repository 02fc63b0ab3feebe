package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// targetCache is fleet.TargetCache in a file per flake reference next to
// the completion cache ($XDG_CACHE_HOME/skiff/targets-<flake>.json): for
// each host selection of the command line, the hosts it chose, and each
// host's evaluated ssh target and the system the last deploy left it
// running. Guesses only: the deploy opens the guessed connections while
// it evaluates and keeps those the evaluation confirms, and opens a
// host's copy early when the host likely lacks the new system.
type targetCache struct {
	file string // "": no cache directory
}

type targetFile struct {
	Selections map[string][]string         `json:"selections"`
	Targets    map[string]transport.Target `json:"targets"`
	Systems    map[string]string           `json:"systems,omitempty"`
}

// maxSelections bounds the selections a file remembers.
const maxSelections = 64

func newTargetCache(ref flake.Ref) *targetCache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return &targetCache{}
	}
	id := sha256.Sum256([]byte(ref.URL))
	return &targetCache{file: filepath.Join(dir, "skiff", "targets-"+hex.EncodeToString(id[:8])+".json")}
}

func selectionKey(selection []string) string { return strings.Join(selection, " ") }

func (c *targetCache) read() targetFile {
	var f targetFile
	if c.file != "" {
		if b, err := os.ReadFile(c.file); err == nil {
			_ = json.Unmarshal(b, &f)
		}
	}
	if f.Selections == nil {
		f.Selections = map[string][]string{}
	}
	if f.Targets == nil {
		f.Targets = map[string]transport.Target{}
	}
	return f
}

func (c *targetCache) Load(selection []string) map[string]transport.Target {
	f := c.read()
	names, ok := f.Selections[selectionKey(selection)]
	if !ok {
		// A selection of host names only: those hosts, whichever
		// selection reached them.
		names = plainNames(selection)
	}
	if len(names) == 0 {
		return nil
	}
	out := map[string]transport.Target{}
	for _, n := range names {
		t, ok := f.Targets[n]
		if !ok || t.Host == "" || t.Local {
			return nil
		}
		out[n] = t
	}
	return out
}

func (c *targetCache) Save(selection []string, targets map[string]transport.Target) {
	if c.file == "" {
		return
	}
	f := c.read()
	key := selectionKey(selection)
	if _, ok := f.Selections[key]; !ok && len(f.Selections) >= maxSelections {
		f.Selections = map[string][]string{} // start again rather than grow
	}
	names := make([]string, 0, len(targets))
	for n, t := range targets {
		names = append(names, n)
		f.Targets[n] = t
	}
	f.Selections[key] = names
	c.write(f)
}

func (c *targetCache) Systems() map[string]string {
	return c.read().Systems
}

func (c *targetCache) SaveSystems(systems map[string]string) {
	if c.file == "" || len(systems) == 0 {
		return
	}
	f := c.read()
	if f.Systems == nil {
		f.Systems = map[string]string{}
	}
	for n, p := range systems {
		if p == "" {
			delete(f.Systems, n)
		} else {
			f.Systems[n] = p
		}
	}
	c.write(f)
}

func (c *targetCache) write(f targetFile) {
	b, err := json.Marshal(f)
	if err != nil {
		return
	}
	// A cache: failures to write it cost only the next run's head start.
	dir := filepath.Dir(c.file)
	if os.MkdirAll(dir, 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, ".targets-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), c.file) != nil {
		os.Remove(tmp.Name())
	}
}

// plainNames are the host names of a selection made of names only (no
// globs, no tags); nil otherwise.
func plainNames(selection []string) []string {
	var names []string
	for _, a := range selection {
		for _, n := range strings.Split(a, ",") {
			if n = strings.TrimSpace(n); !flake.ValidName(n) {
				return nil
			}
			names = append(names, n)
		}
	}
	return names
}
