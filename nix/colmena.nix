# skiff's deployment settings that colmena does not declare (critical,
# buildHost, healthChecks), for the nodes of a colmena hive: colmena's
# evaluation declares the rest of `deployment` itself, and an option
# declared twice is an error. Import it in the hive's `defaults`:
#
#   colmena = { meta = { ... }; defaults = { imports = [ skiff.nixosModules.colmena ]; }; ... };
#
# The declarations are module.nix's own, so the two cannot drift apart.
args@{ lib, ... }:
let
  all = (import ./module.nix (args // {
    config = throw "option declarations must not read config";
  })).options.deployment;
in
{
  options.deployment = { inherit (all) critical buildHost healthChecks; };
}
