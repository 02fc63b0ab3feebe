package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and revision are stamped into release builds:
//
//	go build -ldflags "-X github.com/skiffdeploy/skiff/internal/cli.version=v1.2.0 -X github.com/skiffdeploy/skiff/internal/cli.revision=$(git rev-parse HEAD)"
//
// When they are empty, the module version and the VCS settings Go records
// in the binary are used.
var (
	version  = ""
	revision = ""
)

// buildVersion is what "skiff version" reports (the JSON form is stable).
type buildVersion struct {
	Version  string `json:"version"`  // module version, "(devel)" when unknown
	Revision string `json:"revision"` // VCS revision, "" when unknown
	Modified bool   `json:"modified"` // the work tree had uncommitted changes
	Time     string `json:"time"`     // commit time (RFC 3339), "" when unknown
	Go       string `json:"go"`       // the Go release that built skiff
	Platform string `json:"platform"` // GOOS/GOARCH
}

// readVersion combines the -ldflags overrides with the build information.
func readVersion() buildVersion {
	v := buildVersion{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		v = versionFrom(info, v)
	}
	if version != "" {
		v.Version = version
	}
	if revision != "" {
		v.Revision = revision
	}
	return v
}

// versionFrom reads the module version and the vcs.* settings of info.
func versionFrom(info *debug.BuildInfo, v buildVersion) buildVersion {
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "vcs.time":
			v.Time = s.Value
		}
	}
	return v
}

// String is the one line "skiff --version" prints.
func (v buildVersion) String() string {
	s := "skiff " + v.Version
	if v.Revision != "" {
		s += " (revision " + v.Revision
		if v.Modified {
			s += ", modified"
		}
		if v.Time != "" {
			s += ", " + v.Time
		}
		s += ")"
	}
	return s + " " + v.Go + " " + v.Platform
}

func newVersion(g *globals) *cobra.Command {
	var jsonOut bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print skiff's version, VCS revision and Go version",
		Long: `Version prints skiff's version (the release, or "(devel)" for a build from a
work tree), the VCS revision it was built from (with "modified" when the
work tree had uncommitted changes) and its commit time, the Go release and
the platform. "skiff --version" prints the same line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVersion(g.stdout, jsonOut)
		},
	}
	c.Flags().BoolVar(&jsonOut, "json", false, "print the version as a JSON object")
	return c
}

func runVersion(w io.Writer, jsonOut bool) error {
	v := readVersion()
	if jsonOut {
		return json.NewEncoder(w).Encode(v)
	}
	_, err := fmt.Fprintln(w, v)
	return err
}
