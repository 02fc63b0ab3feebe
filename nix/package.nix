# skiff as a Nix package: a static Go binary (CGO_ENABLED=0) with its version
# and revision stamped, its man pages and its shell completions, which the
# binary itself writes (`skiff man DIR`, `skiff completion SHELL`).
#
# vendorHash is the hash of `go mod vendor`'s output for go.mod and go.sum;
# cmd/skiff's TestVendorHash recomputes it and fails when it is stale (it
# prints the new value).
{ lib
, stdenv
, buildGoModule
, buildGo126Module ? null
, installShellFiles
, version ? "unstable"
, revision ? "unknown"
}:
let
  # go.mod asks for Go 1.26; nixpkgs' default Go may be older or newer.
  build = if buildGo126Module != null then buildGo126Module else buildGoModule;
  cli = "github.com/skiffdeploy/skiff/internal/cli";
in
build {
  pname = "skiff";
  inherit version;

  # Only what the Go build reads, so that editing the README or the examples
  # does not rebuild skiff. Every Go package of the module lives in these
  # directories (cmd/skiff's TestFlakeSourceHoldsEveryPackage checks it).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [ ../go.mod ../go.sum ../cmd ../internal ../bench ];
  };

  vendorHash = "sha256-sN5LxSSPMjptbtAXuTXgpInnoE79dpowE5iiqSmr7NQ=";

  subPackages = [ "cmd/skiff" ];
  env.CGO_ENABLED = "0";
  ldflags = [
    "-s"
    "-w"
    "-X ${cli}.version=${version}"
    "-X ${cli}.revision=${revision}"
  ];

  # skiff's tests need real Nix stores and sshd hosts (scripts/test runs them).
  doCheck = false;

  nativeBuildInputs = [ installShellFiles ];
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd skiff \
      --bash <($out/bin/skiff completion bash) \
      --zsh <($out/bin/skiff completion zsh) \
      --fish <($out/bin/skiff completion fish)
    $out/bin/skiff man man
    installManPage man/*.1
  '';

  meta = {
    description = "Deploy the NixOS and nix-darwin hosts of a flake over SSH, with automatic rollback";
    homepage = "https://github.com/skiffdeploy/skiff";
    mainProgram = "skiff";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
