package main

// Checks of the Nix packaging (flake.nix, nix/) that run without nixpkgs,
// which cannot be fetched here: every file parses, the flake's outputs
// evaluate against a stub of nixpkgs to the expected shape, the package's
// source holds every Go package, and vendorHash matches go.mod and go.sum.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var nixFeatures = []string{"--extra-experimental-features", "nix-command flakes"}

func needNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nix is not installed")
		}
		t.Skip("nix is not installed")
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func runTool(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.String())
	}
	return string(out)
}

func TestNixFilesParse(t *testing.T) {
	needNix(t)
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "nix", "*.nix"))
	files = append(files, filepath.Join(root, "flake.nix"))
	for _, f := range files {
		runTool(t, root, nil, "nix-instantiate", "--parse", f)
	}
}

// stubNixpkgs evaluates the flake's outputs with a stub of nixpkgs that
// has what flake.nix and nix/package.nix use; buildGoModule returns its
// arguments.
const stubNixpkgs = `
let
  flake = import (builtins.getEnv "SKIFF_FLAKE_NIX");
  systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    fileset = { unions = l: l; toSource = { root, fileset }: { inherit root; fileset = map toString fileset; }; };
    optionalString = c: s: if c then s else "";
    platforms = { linux = [ "x86_64-linux" "aarch64-linux" ]; darwin = [ "x86_64-darwin" "aarch64-darwin" ]; };
  };
  pkgsFor = system: let pkgs = {
    inherit lib;
    stdenv = { hostPlatform.system = system; buildPlatform.canExecute = p: true; };
    buildGoModule = args: args // { type = "derivation"; outPath = "/nix/store/skiff-" + system; };
    installShellFiles = "installShellFiles";
    go = "go"; gopls = "gopls"; shellcheck = "shellcheck"; nix = "nix";
    mkShell = args: args;
    callPackage = fn: args: let f = import fn; in f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // args);
  }; in pkgs;
  nixpkgs = { inherit lib; legacyPackages = lib.genAttrs systems pkgsFor; };
  self = outputs // { lastModifiedDate = "20261201093000"; rev = "0123456789abcdef"; };
  outputs = flake.outputs { inherit self nixpkgs; };
  pkg = outputs.packages.x86_64-linux.default;
in {
  inherit (flake) inputs;
  packages = builtins.mapAttrs (s: p: builtins.attrNames p) outputs.packages;
  apps = builtins.mapAttrs (s: a: { inherit (a.default) type program; }) outputs.apps;
  devShells = builtins.mapAttrs (s: d: d.default.packages) outputs.devShells;
  package = { inherit (pkg) pname version vendorHash subPackages ldflags env doCheck postInstall; src = pkg.src.fileset; };
  overlay = (outputs.overlays.default (pkgsFor "aarch64-darwin") { }).skiff.outPath;
  modules = [ (toString outputs.nixosModules.default) (toString outputs.darwinModules.default) (toString outputs.nixosModules.colmena) ];
}
`

type flakeShape struct {
	Inputs   map[string]map[string]string `json:"inputs"`
	Packages map[string][]string          `json:"packages"`
	Apps     map[string]struct {
		Type, Program string
	} `json:"apps"`
	DevShells map[string][]string `json:"devShells"`
	Package   struct {
		Pname, Version, VendorHash, PostInstall string
		SubPackages                             []string
		Ldflags                                 []string
		Env                                     map[string]string
		DoCheck                                 bool
		Src                                     []string
	} `json:"package"`
	Overlay string   `json:"overlay"`
	Modules []string `json:"modules"`
}

func evalFlake(t *testing.T) flakeShape {
	t.Helper()
	needNix(t)
	root := repoRoot(t)
	args := append(append([]string{}, nixFeatures...), "eval", "--impure", "--json", "--expr", stubNixpkgs)
	out := runTool(t, root, []string{"SKIFF_FLAKE_NIX=" + filepath.Join(root, "flake.nix")}, "nix", args...)
	var s flakeShape
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return s
}

func TestFlakeOutputs(t *testing.T) {
	s := evalFlake(t)
	root := repoRoot(t)
	if s.Inputs["nixpkgs"]["url"] == "" {
		t.Errorf("flake.nix has no nixpkgs input: %v", s.Inputs)
	}
	systems := []string{"aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux"}
	for _, sys := range systems {
		if diff := cmp.Diff([]string{"default", "skiff"}, s.Packages[sys]); diff != "" {
			t.Errorf("packages.%s (-want +got):\n%s", sys, diff)
		}
		if a := s.Apps[sys]; a.Type != "app" || a.Program != "/nix/store/skiff-"+sys+"/bin/skiff" {
			t.Errorf("apps.%s.default = %+v", sys, a)
		}
		if diff := cmp.Diff([]string{"go", "gopls", "shellcheck", "nix"}, s.DevShells[sys]); diff != "" {
			t.Errorf("devShells.%s.default packages (-want +got):\n%s", sys, diff)
		}
	}
	if len(s.Packages) != len(systems) {
		t.Errorf("packages for %d systems, want %d", len(s.Packages), len(systems))
	}
	p := s.Package
	cli := "github.com/skiffdeploy/skiff/internal/cli"
	if p.Pname != "skiff" || p.Version != "0-unstable-20261201" || p.DoCheck || p.Env["CGO_ENABLED"] != "0" ||
		!cmp.Equal(p.SubPackages, []string{"cmd/skiff"}) {
		t.Errorf("package = %+v", p)
	}
	for _, want := range []string{"-X " + cli + ".version=0-unstable-20261201", "-X " + cli + ".revision=0123456789abcdef"} {
		if !strings.Contains(strings.Join(p.Ldflags, "\n"), want) {
			t.Errorf("ldflags %q lack %q", p.Ldflags, want)
		}
	}
	for _, want := range []string{"skiff completion bash", "skiff completion zsh", "skiff completion fish", "skiff man man", "installManPage man/*.1"} {
		if !strings.Contains(p.PostInstall, want) {
			t.Errorf("postInstall lacks %q:\n%s", want, p.PostInstall)
		}
	}
	if s.Overlay != "/nix/store/skiff-aarch64-darwin" {
		t.Errorf("overlays.default gives skiff = %q", s.Overlay)
	}
	module := filepath.Join(root, "nix", "module.nix")
	if diff := cmp.Diff([]string{module, module, filepath.Join(root, "nix", "colmena.nix")}, s.Modules); diff != "" {
		t.Errorf("nixosModules.default, darwinModules.default, nixosModules.colmena (-want +got):\n%s", diff)
	}
}

// TestFlakeSourceHoldsEveryPackage fails when a Go package lives outside
// the directories the package's source is made of (the build would miss it).
func TestFlakeSourceHoldsEveryPackage(t *testing.T) {
	s := evalFlake(t)
	root := repoRoot(t)
	var dirs []string
	for _, f := range s.Package.Src {
		dirs = append(dirs, filepath.Clean(f))
	}
	for _, want := range []string{"go.mod", "go.sum"} {
		if !containsPath(dirs, filepath.Join(root, want)) {
			t.Errorf("the package's source lacks %s: %v", want, dirs)
		}
	}
	out := runTool(t, root, nil, "go", "list", "-f", "{{.Dir}}", "./...")
	for _, dir := range strings.Fields(out) {
		if !containsPath(dirs, dir) {
			t.Errorf("Go package %s is outside the package's source %v: add its directory to nix/package.nix", dir, dirs)
		}
	}
}

func containsPath(roots []string, p string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// TestVendorHash recomputes vendorHash as buildGoModule does (its
// goModules derivation runs "go mod vendor" and its output, the vendor
// directory, is hashed as a NAR) and fails when nix/package.nix's is stale.
func TestVendorHash(t *testing.T) {
	s := evalFlake(t)
	root := repoRoot(t)
	vendor := filepath.Join(t.TempDir(), "vendor")
	runTool(t, root, []string{"GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local"}, "go", "mod", "vendor", "-o", vendor)
	args := append(append([]string{}, nixFeatures...), "hash", "path", "--type", "sha256", "--sri", vendor)
	got := strings.TrimSpace(runTool(t, root, nil, "nix", args...))
	if !regexp.MustCompile(`^sha256-[A-Za-z0-9+/]{43}=$`).MatchString(got) {
		t.Fatalf("nix hash path printed %q", got)
	}
	if s.Package.VendorHash != got {
		t.Errorf("nix/package.nix has vendorHash = %q, but go.mod and go.sum now vendor to %q: write that into nix/package.nix", s.Package.VendorHash, got)
	}
}

func TestReleaseTargetsMatchFlakeSystems(t *testing.T) {
	s := evalFlake(t)
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "release"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^targets="([^"]*)"`).FindSubmatch(b)
	if m == nil {
		t.Fatal(`scripts/release has no targets="..." line`)
	}
	var release, flake []string
	for _, tgt := range strings.Fields(string(m[1])) {
		release = append(release, tgt)
	}
	goName := map[string]string{"x86_64": "amd64", "aarch64": "arm64"}
	for sys := range s.Packages {
		arch, os, _ := strings.Cut(sys, "-")
		flake = append(flake, os+"/"+goName[arch])
	}
	sort.Strings(release)
	sort.Strings(flake)
	if diff := cmp.Diff(flake, release); diff != "" {
		t.Errorf("scripts/release targets differ from the flake's systems (-flake +release):\n%s", diff)
	}
}
