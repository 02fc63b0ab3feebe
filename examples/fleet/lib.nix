# NixOS-shaped systems for the skiff lab, without nixpkgs.
#
# Every derivation is built by /bin/sh with coreutils from /bin and /usr/bin (the lab
# machine builds with sandbox = false), so the flake needs no inputs and no network.
#
#   mkSystem { name, generation ? 1, units ? defaultUnits, authorizedKeys ? null,
#              activationFails ? false, activationDelay ? 0, deployment ? {},
#              system ? "x86_64-linux", baseSize ? 0,
#              nixosVersion ? "24.05.20240601.lab", initInterfaceVersion ? "systemd",
#              packages ? {} }
#
# returns { config = { system.build.toplevel; deployment; nixpkgs.hostPlatform.system;
# networking.hostName; }; }, the part of a NixOS configuration that deploy tools read.
#
# The toplevel's closure: the toplevel itself, etc-NAME (per host: etc/hostname,
# etc/lab/units/*, etc/ssh/authorized_keys.d/*), lab-system-path (shared by every host
# of a platform: sw/bin, and baseSize bytes of filler), linux-lab (kernel and initrd
# stand-ins) and lab-nixos-tools (switch-to-configuration and activate).
# packages = { NAME = VERSION; } adds a store path NAME-VERSION per entry to the closure
# (listed in etc/lab/packages), so that closures differ by real package versions.
let
  boolStr = b: if b then "1" else "0";
  valueStr = v: if builtins.isBool v then boolStr v else toString v;
  concat = builtins.concatStringsSep "";

  # Names end up as file names in the store and on hosts: keep them boring.
  checkName = what: n:
    if builtins.match "[A-Za-z0-9@_.:-]+" n != null && n != "." && n != ".."
    then n
    else throw "lib.nix: invalid ${what} name '${n}'";

  # Default units of a lab system. A unit is { description; fails ? false;
  # stopIfChanged ? true; failMessage ? ...; } plus any other attribute: every
  # attribute is written to the unit's definition, so changing one (say version =
  # generation) makes switch-to-configuration restart the unit.
  defaultUnits = {
    "sshd.service" = { description = "OpenSSH Daemon"; stopIfChanged = false; };
  };

  unitDefaults = { fails = false; stopIfChanged = true; };

  renderUnit = u:
    let full = unitDefaults // u;
    in concat (map (k: "${k}=${valueStr full.${k}}\n") (builtins.attrNames full));

  # A manifest of text files for lab/build-files.sh: "@file PATH" starts a file, the
  # following lines are its content.
  file = path: text: "@file ${path}\n${text}";
in
{
  inherit defaultUnits;

  mkSystem =
    { name
    , generation ? 1
    , units ? defaultUnits
    , authorizedKeys ? null
    , activationFails ? false
    , activationDelay ? 0
    , deployment ? { }
    , system ? "x86_64-linux"
    , baseSize ? 0
    , nixosVersion ? "24.05.20240601.lab"
    , initInterfaceVersion ? "systemd"
    , packages ? { }
    }:
    let
      hostName = checkName "host" name;

      mk = attrs: derivation ({
        inherit system;
        builder = "/bin/sh";
        preferLocalBuild = true;
        allowSubstitutes = false;
      } // attrs);

      tools = mk {
        name = "lab-nixos-tools";
        args = [ ./lab/build-tools.sh ];
        switchScript = ./lab/switch-to-configuration.sh;
        activateScript = ./lab/activate.sh;
      };

      base = mk {
        name = "lab-system-path";
        args = [ ./lab/build-base.sh ];
        baseSize = toString baseSize;
        inherit nixosVersion;
      };

      kernel = mk {
        name = "linux-lab-6.6.32";
        args = [ ./lab/build-kernel.sh ];
      };

      unitFiles = map
        (u: file "etc/lab/units/${checkName "unit" u}" (renderUnit units.${u}))
        (builtins.attrNames units);

      # authorizedKeys = { root = [ "ssh-ed25519 ..." ]; deploy = [ ]; }: each listed
      # user's /etc/ssh/authorized_keys.d/USER is replaced on activation; an empty
      # list empties it (and locks that user out). null leaves every user alone.
      keyFiles =
        if authorizedKeys == null then [ ]
        else
          map
            (user: file "etc/ssh/authorized_keys.d/${checkName "user" user}"
              (concat (map (k: k + "\n") authorizedKeys.${user})))
            (builtins.attrNames authorizedKeys);

      packageFiles =
        if packages == { } then [ ]
        else [
          (file "etc/lab/packages" (concat (map
            (n: "${mk {
              name = "${checkName "package" n}-${toString packages.${n}}";
              args = [ "-c" "printf '%s\\n' \"$name\" >\"$out\"" ];
            }}\n")
            (builtins.attrNames packages))))
        ];

      etc = mk {
        name = "etc-${hostName}";
        args = [ ./lab/build-files.sh ];
        manifest = concat ([
          (file "etc/hostname" "${hostName}\n")
          (file "etc/lab/generation" "${toString generation}\n")
          (file "etc/NIXOS" "")
        ] ++ unitFiles ++ keyFiles ++ packageFiles);
        passAsFile = [ "manifest" ];
      };

      toplevel = mk {
        name = "nixos-system-${hostName}-${nixosVersion}";
        args = [ ./lab/build-toplevel.sh ];
        inherit etc base kernel tools nixosVersion initInterfaceVersion;
        activationFails = boolStr activationFails;
        activationDelay = toString activationDelay;
      };
    in
    {
      config = {
        system.build.toplevel = toplevel;
        inherit deployment;
        nixpkgs.hostPlatform.system = system;
        networking.hostName = hostName;
      };
    };
}
