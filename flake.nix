{
  description = "skiff: deploy the NixOS and nix-darwin hosts of a flake over SSH, with automatic rollback";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # A flake has no tags: the version is the date of the last commit, the
      # revision the commit (or "dirty" for a tree with uncommitted changes).
      version = "0-unstable-" + builtins.substring 0 8 (self.lastModifiedDate or "19700101");
      revision = self.rev or self.dirtyRev or "dirty";

      skiffFor = pkgs: pkgs.callPackage ./nix/package.nix { inherit version revision; };
    in
    {
      packages = forAllSystems (pkgs: rec {
        skiff = skiffFor pkgs;
        default = skiff;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.skiff}/bin/skiff";
          meta.description = "Deploy the hosts of a flake over SSH";
        };
      });

      # pkgs.skiff for a fleet's own flake: nixpkgs.overlays = [ skiff.overlays.default ].
      overlays.default = final: prev: { skiff = skiffFor final; };

      # deployment.* options (targetHost, tags, healthChecks, keys, ...),
      # typed and documented; skiff also reads plain attributes without them.
      nixosModules.default = ./nix/module.nix;
      darwinModules.default = ./nix/module.nix;
      # For the nodes of a colmena hive, whose evaluation declares the
      # rest: skiff's own settings only (critical, buildHost, healthChecks).
      nixosModules.colmena = ./nix/colmena.nix;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ (pkgs.go_1_26 or pkgs.go) pkgs.gopls pkgs.shellcheck pkgs.nix ];
        };
      });
    };
}
