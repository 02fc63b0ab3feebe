# NixOS-shaped systems for the skiff lab, without nixpkgs.
#
# Every derivation is built by /bin/sh with coreutils from /bin and /usr/bin (the lab
# machine builds with sandbox = false), so the flake needs no inputs and no network.
#
#   mkSystem { name, generation ? 1, units ? defaultUnits, authorizedKeys ? null,
#              activationFails ? false, activationDelay ? 0, deployment ? {},
#              system ? "x86_64-linux", baseSize ? 0, basePaths ? 0,
#              nixosVersion ? "24.05.20240601.lab", initInterfaceVersion ? "systemd",
#              packages ? {}, kernelVersion ? "6.6.32" }
#
# returns { config = { system.build.toplevel; deployment; nixpkgs.hostPlatform.system;
# networking.hostName; }; }, the part of a NixOS configuration that deploy tools read.
#
# The toplevel's closure: the toplevel itself, etc-NAME (per host: etc/hostname,
# etc/lab/units/*, etc/ssh/authorized_keys.d/*), lab-system-path (shared by every host
# of a platform: sw/bin, and baseSize bytes of filler), linux-lab (kernel and initrd
# stand-ins) and lab-nixos-tools (switch-to-configuration and activate).
# basePaths adds that many small store paths (lab-dep-N, text files made at
# evaluation), referenced by lab-system-path: a closure as large as a real
# NixOS system's, which has thousands of paths.
# packages = { NAME = VERSION; } adds a store path NAME-VERSION per entry to the closure
# (listed in etc/lab/packages), so that closures differ by real package versions.
# kernelVersion changes the system's kernel and initrd: a host that switches to it
# needs a reboot to run them (skiff's "needs a reboot").
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
    , basePaths ? 0
    , nixosVersion ? "24.05.20240601.lab"
    , initInterfaceVersion ? "systemd"
    , packages ? { }
    , kernelVersion ? "6.6.32"
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

      base = mk ({
        name = "lab-system-path";
        args = [ ./lab/build-base.sh ];
        baseSize = toString baseSize;
        inherit nixosVersion;
      } // (if basePaths == 0 then { } else {
        deps = concat (builtins.genList
          (i: "${builtins.toFile "lab-dep-${toString i}" "${toString i}\n"}\n")
          basePaths);
        passAsFile = [ "deps" ];
      }));

      kernel = mk {
        name = "linux-lab-${kernelVersion}";
        version = kernelVersion;
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

  # A nix-darwin-shaped system: darwinConfigurations.NAME = lib.mkDarwinSystem { ... }.
  #
  #   mkDarwinSystem { name, generation ? 1, authorizedKeys ? null, activationFails ? false,
  #                    deployment ? {}, system ? "x86_64-darwin", buildSystem ? "x86_64-linux" }
  #
  # system is the platform the host runs (nixpkgs.hostPlatform.system); buildSystem is the
  # derivations' system, the platform that builds them. A real nix-darwin toplevel is a
  # darwin derivation built on a Mac (or a darwin builder); the lab builds with /bin/sh on
  # Linux, so by default its derivations say x86_64-linux while the host says x86_64-darwin.
  # buildSystem = "x86_64-darwin" gives the real thing, which this machine cannot build.
  mkDarwinSystem =
    { name
    , generation ? 1
    , authorizedKeys ? null
    , activationFails ? false
    , deployment ? { }
    , system ? "x86_64-darwin"
    , buildSystem ? "x86_64-linux"
    }:
    let
      hostName = checkName "host" name;

      mk = attrs: derivation ({
        system = buildSystem;
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

      keyFiles =
        if authorizedKeys == null then [ ]
        else
          map
            (user: file "etc/ssh/authorized_keys.d/${checkName "user" user}"
              (concat (map (k: k + "\n") authorizedKeys.${user})))
            (builtins.attrNames authorizedKeys);

      etc = mk {
        name = "darwin-etc-${hostName}";
        args = [ ./lab/build-files.sh ];
        manifest = concat ([
          (file "etc/hostname" "${hostName}\n")
          (file "etc/lab/generation" "${toString generation}\n")
        ] ++ keyFiles);
        passAsFile = [ "manifest" ];
      };

      toplevel = mk {
        name = "darwin-system-${hostName}-lab";
        args = [ ./lab/build-darwin.sh ];
        inherit etc tools;
        hostSystem = system;
        darwinLabel = "lab.${toString generation}";
        activationFails = boolStr activationFails;
      };
    in
    {
      config = {
        system.build.toplevel = toplevel;
        inherit deployment;
        nixpkgs.hostPlatform.system = system;
        networking.hostName = hostName;
      };
      system = toplevel;
    };

  # A system for skiff's systemd test hosts (internal/lab/nspawn: Debian containers
  # running systemd 252), whose switch-to-configuration changes the host's real systemd.
  #
  #   mkSystemdSystem { name, generation ? 1, units ? {}, sshdConfig ? "",
  #                     activationFails ? false, activationDelay ? 0, deployment ? {},
  #                     baseSize ? 0, system ? "x86_64-linux",
  #                     nixosVersion ? "24.05.20240601.lab" }
  #
  # units = { "NAME.service" = { description; execStart; type ? "exec"; ... }; }: each
  # becomes a unit file linked into /run/systemd/system and started; every other
  # attribute is written into the file as a comment, so changing it (say version =
  # generation) restarts the unit. execStart = "/bin/false" with type = "oneshot" is a
  # unit that really fails. sshdConfig is installed as
  # /etc/ssh/sshd_config.d/50-skiff-system.conf; when it changes, ssh.service restarts
  # (a broken one makes sshd fail to start: a real lockout).
  mkSystemdSystem =
    { name
    , generation ? 1
    , units ? { }
    , sshdConfig ? ""
    , activationFails ? false
    , activationDelay ? 0
    , deployment ? { }
    , baseSize ? 0
    , system ? "x86_64-linux"
    , nixosVersion ? "24.05.20240601.lab"
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
        name = "lab-systemd-tools";
        args = [ ./lab/build-tools.sh ];
        switchScript = ./lab/systemd-switch-to-configuration.sh;
        activateScript = ./lab/systemd-activate.sh;
      };

      base = mk {
        name = "lab-system-path";
        args = [ ./lab/build-base.sh ];
        baseSize = toString baseSize;
        inherit nixosVersion;
      };

      kernel = mk {
        name = "linux-lab-6.6.32";
        version = "6.6.32";
        args = [ ./lab/build-kernel.sh ];
      };

      renderSystemdUnit = u:
        let
          full = { type = "exec"; } // u;
          extra = builtins.removeAttrs full [ "description" "execStart" "type" ];
        in
        concat ([
          "[Unit]\n"
          "Description=${full.description}\n"
        ] ++ map (k: "# ${k}=${valueStr extra.${k}}\n") (builtins.attrNames extra) ++ [
          "\n[Service]\n"
          "Type=${full.type}\n"
          "ExecStart=${full.execStart}\n"
        ]);

      unitFiles = map
        (u: file "etc/systemd-units/${checkName "unit" u}" (renderSystemdUnit units.${u}))
        (builtins.attrNames units);

      sshdFiles =
        if sshdConfig == "" then [ ]
        else [ (file "etc/ssh/sshd_config.d/50-skiff-system.conf" sshdConfig) ];

      etc = mk {
        name = "etc-${hostName}";
        args = [ ./lab/build-files.sh ];
        manifest = concat ([
          (file "etc/hostname" "${hostName}\n")
          (file "etc/lab/generation" "${toString generation}\n")
          (file "etc/NIXOS" "")
        ] ++ unitFiles ++ sshdFiles);
        passAsFile = [ "manifest" ];
      };

      toplevel = mk {
        name = "nixos-system-${hostName}-${nixosVersion}";
        args = [ ./lab/build-toplevel.sh ];
        inherit etc base kernel tools nixosVersion;
        initInterfaceVersion = "systemd";
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
