package arch

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/skiffdeploy/skiff/"

// forbidden lists, per package, imports it must not have (directly or not).
var forbidden = map[string][]string{
	"internal/activate":  {"internal/cli", "internal/ui", "internal/fleet", "github.com/spf13/cobra"},
	"internal/command":   {"internal/"},
	"internal/diff":      {"internal/cli", "internal/ui", "github.com/spf13/cobra"},
	"internal/doctor":    {"internal/cli", "internal/ui", "internal/fleet", "github.com/spf13/cobra"},
	"internal/fault":     {"internal/"},
	"internal/flake":     {"internal/cli", "internal/ui", "internal/fleet", "internal/remote", "internal/transport", "github.com/spf13/cobra"},
	"internal/fleet":     {"internal/cli", "internal/ui", "github.com/spf13/cobra"},
	"internal/keys":      {"internal/cli", "internal/ui", "internal/fleet", "internal/remote", "internal/transport", "internal/flake", "github.com/spf13/cobra"},
	"internal/history":   {"internal/cli", "internal/ui", "internal/fleet", "github.com/spf13/cobra"},
	"internal/nix":       {"internal/cli", "internal/ui", "internal/fleet", "internal/remote", "internal/transport", "github.com/spf13/cobra"},
	"internal/remote":    {"internal/cli", "internal/ui", "internal/fleet", "internal/activate", "github.com/spf13/cobra"},
	"internal/transport": {"internal/cli", "internal/ui", "internal/fleet", "internal/remote", "github.com/spf13/cobra"},
	"internal/ui":        {"internal/cli", "github.com/spf13/cobra"},
	"cmd/skiff":          {"internal/lab"}, // the test fleet never ships in skiff
}

func TestDependenciesPointOneWay(t *testing.T) {
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", "../../"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			ours := strings.HasPrefix(p.ImportPath, mod)
			dep := strings.TrimPrefix(p.ImportPath, mod)
			if dep == pkg {
				continue
			}
			for _, b := range bad {
				// "internal/..." names skiff's packages, not the
				// standard library's.
				if strings.HasPrefix(b, "internal/") && !ours {
					continue
				}
				if strings.HasPrefix(dep, b) {
					t.Errorf("%s depends on %s", pkg, p.ImportPath)
				}
			}
		}
	}
}

// TestNoHandMadeBoundedLoops fails on a counting semaphore made of a
// channel (make(chan struct{}, N)): errgroup's SetLimit bounds a loop in
// one line, and golang.org/x/sync/semaphore bounds one whose waits must be
// cancellable.
func TestNoHandMadeBoundedLoops(t *testing.T) {
	fset := token.NewFileSet()
	for _, root := range []string{"../../cmd", "../../internal"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "make" {
					return true
				}
				ch, ok := call.Args[0].(*ast.ChanType)
				if !ok {
					return true
				}
				if st, ok := ch.Value.(*ast.StructType); ok && len(st.Fields.List) == 0 {
					t.Errorf("%s: a channel used as a counting semaphore: use errgroup's SetLimit (or x/sync/semaphore)", fset.Position(call.Pos()))
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
