{
  description = "skiff example fleet: NixOS-shaped lab systems that need no nixpkgs";

  # No inputs: everything is built by /bin/sh (see lib.nix), so the flake evaluates
  # and builds without network access.
  outputs = { self }:
    let
      lib = import ./lib.nix;

      # ./generation holds a number (default 1): write a new one to get new systems.
      generation =
        if builtins.pathExists ./generation
        then
          let m = builtins.match "[[:space:]]*([0-9]+)[[:space:]]*" (builtins.readFile ./generation);
          in if m == null then throw "flake.nix: ./generation must hold a number" else builtins.fromJSON (builtins.head m)
        else 1;

      # ./overrides.nix (optional) changes mkSystem arguments per host without editing
      # this file: { "*" = { ... }; web1 = { activationFails = true; }; } where a value
      # may also be a function from the host's arguments to the attributes to change.
      overrides = if builtins.pathExists ./overrides.nix then import ./overrides.nix else { };
      apply = o: args: args // (if builtins.isFunction o then o args else o);

      host = name: args:
        lib.mkSystem (apply (overrides.${name} or { }) (apply (overrides."*" or { }) ({ inherit name generation; } // args)));

      webUnits = lib.defaultUnits // {
        "demo-web.service" = { description = "Demo web service"; version = generation; };
      };
      dbUnits = lib.defaultUnits // {
        "demo-db.service" = { description = "Demo database"; stopIfChanged = false; version = generation; };
      };
    in
    {
      nixosConfigurations = {
        web1 = host "web1" { units = webUnits; deployment.tags = [ "web" ]; };
        web2 = host "web2" { units = webUnits; deployment.tags = [ "web" ]; };
        db1 = host "db1" { units = dbUnits; deployment.tags = [ "db" ]; };
      };
    };
}
