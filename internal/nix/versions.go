package nix

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
)

// This file is the one place that names the differences between Nix
// releases skiff handles on the deployer (the hosts only run nix-store,
// nix-env and switch-to-configuration, whose interfaces did not change).
// Each Difference says in which release the new behaviour appeared and
// which function handles it; the end-to-end tests run Nix 2.8 and 2.26 on
// both sides (internal/e2e and internal/e2e/matrix).

// Difference is one change of behaviour between Nix releases.
type Difference struct {
	Name   string
	Since  Version // the first release that behaves the new way
	Before string  // what older releases do
	After  string  // what Since and newer releases do
	// Handled names the function of this package that copes with it.
	Handled string
}

var (
	// DerivedPathOutputs: nix build of a bare .drv path.
	DerivedPathOutputs = Difference{
		Name: "derived-path-outputs", Since: Version{Major: 2, Minor: 13},
		Before:  "nix build DRV builds the outputs of DRV",
		After:   `nix build DRV "builds" the .drv file itself (--json prints ["DRV"]); DRV^out builds its output`,
		Handled: "BuildTarget (DRV^out from 2.13 on), ParseBuildResults (refuses the bare .drv answer)",
	}
	// BuildPrintOutPaths: how nix build reports what it built.
	BuildPrintOutPaths = Difference{
		Name: "build-print-out-paths", Since: Version{Major: 2, Minor: 9},
		Before:  "nix build has no --print-out-paths; --json prints drvPath and outputs",
		After:   "--print-out-paths exists; --json adds startTime and stopTime",
		Handled: "Build reads --json on every release (ParseBuildResults ignores the added fields)",
	}
	// PathInfoObject: the shape of nix path-info --json.
	PathInfoObject = Difference{
		Name: "path-info-object", Since: Version{Major: 2, Minor: 19},
		Before:  `nix path-info --json prints a list of objects with a "path" key`,
		After:   "an object keyed by store path (null for an invalid path)",
		Handled: "ParsePathInfo (by the shape of the output, so that Lix and backports work too)",
	}
	// ConfigShow: reading the configuration.
	ConfigShow = Difference{
		Name: "config-show", Since: Version{Major: 2, Minor: 20},
		Before:  "nix show-config",
		After:   `nix config show; "show-config" is a deprecated alias that warns on standard error`,
		Handled: "ConfigShowArgs; ReadBuildConfig tries the other form when the first one fails",
	}
	// PathInfoJSONFormat: nix path-info's --json-format.
	PathInfoJSONFormat = Difference{
		Name: "path-info-json-format", Since: Version{Major: 2, Minor: 33},
		Before: "nix path-info has no --json-format and refuses it",
		After: "--json without --json-format warns that the flag will be required (\"will become an error in a future release\"); " +
			"--json-format 1 prints the object keyed by store path, with version and storeDir in each record",
		Handled: "ClosureArgs (--json-format 1 where the version is known to have it); AskClosure (Closure's, and the build host's read) " +
			"tries the other form when nix refuses the one chosen (RefusesJSONFormat)",
	}
)

// Differences lists every Difference, oldest first.
var Differences = []Difference{BuildPrintOutPaths, DerivedPathOutputs, PathInfoObject, ConfigShow, PathInfoJSONFormat}

// LixBase is the Nix release Lix forked from: a Lix of any version behaves
// like it for every Difference (Lix numbers its releases 2.90 and up).
var LixBase = Version{Major: 2, Minor: 18}

// Version is a parsed "nix (Nix) 2.8.0".
type Version struct {
	Major, Minor int
	// Lix is set for Lix ("nix (Lix, like Nix) 2.91.1").
	Lix bool
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d", v.Major, v.Minor)
	if v.Lix {
		return "Lix " + s
	}
	return s
}

// AtLeast reports whether v is major.minor or newer (by number).
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Has reports whether a nix of version v behaves the new way of d.
func (v Version) Has(d Difference) bool {
	if v.Lix {
		v = LixBase
	}
	return v.AtLeast(d.Since.Major, d.Since.Minor)
}

// The Nix version comes after the parenthesis: "nix (Determinate Nix 3.6.2)
// 2.29.0" is Nix 2.29.
var (
	versionAfterRE = regexp.MustCompile(`\)\s*(\d+)\.(\d+)`)
	versionRE      = regexp.MustCompile(`(\d+)\.(\d+)`)
)

// ParseVersion reads the output of "nix --version" (or "nix-store
// --version"): Nix, Lix or Determinate Nix.
func ParseVersion(out string) (Version, error) {
	m := versionAfterRE.FindStringSubmatch(out)
	if m == nil {
		m = versionRE.FindStringSubmatch(out)
	}
	if m == nil {
		return Version{}, fmt.Errorf("cannot read nix version from %q", strings.TrimSpace(out))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return Version{Major: major, Minor: minor, Lix: strings.Contains(out, "(Lix")}, nil
}

// BuildTarget is the argument that asks nix build to build the outputs of
// a derivation (DerivedPathOutputs).
func BuildTarget(v Version, drv string) string {
	if v.Has(DerivedPathOutputs) {
		return drv + "^out"
	}
	return drv
}

// ConfigShowArgs is the nix subcommand that prints the configuration as
// JSON (ConfigShow).
func ConfigShowArgs(v Version) []string {
	if v.Has(ConfigShow) {
		return []string{"config", "show", "--json"}
	}
	return []string{"show-config", "--json"}
}

// ClosureArgs is the nix subcommand that prints the records of the
// closures of the paths that follow it as JSON, in the shape ParsePathInfo
// reads: with "--json-format 1" when format is set (PathInfoJSONFormat).
func ClosureArgs(format bool) []string {
	if format {
		return []string{"path-info", "-r", "--json", "--json-format", "1"}
	}
	return []string{"path-info", "-r", "--json"}
}

// RefusesJSONFormat reports whether err is nix path-info refusing the form
// ClosureArgs chose: a release before PathInfoJSONFormat that does not
// know --json-format, or a later one that requires it. Its standard error
// then has an "error:" line naming the flag (a warning about it, even one
// that says it will become an error, is no refusal).
func RefusesJSONFormat(err error) bool {
	var ce *command.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, l := range strings.Split(ce.Stderr, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "error:") && strings.Contains(l, "json-format") {
			return true
		}
	}
	return false
}
