# skiff's per-host deployment settings as module options, for NixOS
# (nixosModules.default) and nix-darwin (darwinModules.default) alike.
#
# Import it into a configuration and set `deployment.*`: a misspelt setting
# or a value of the wrong type then fails at evaluation with the module
# system's own error instead of being ignored. skiff also works without
# this module, reading `deployment` as plain attributes.
#
# The options mirror what skiff reads (internal/flake: Settings); a test
# there fails when the two lists differ. `keys` uses colmena's schema, so
# that configurations written for colmena deploy unchanged.
#
# Only `lib.mkOption`, `lib.types` and builtins are used, so a test can
# evaluate the declarations with a small stub of lib (there is no nixpkgs in
# skiff's test environment).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  # The same shapes skiff's own checks accept (internal/flake), as POSIX
  # extended regular expressions matched against the whole value.
  hostPattern = "[]A-Za-z0-9_.:%[][]A-Za-z0-9_.:%[-]*";
  userPattern = "[a-z_][a-z0-9_.-]*[$]?";

  keyOptions = { name, ... }: {
    options = {
      name = mkOption {
        type = types.str;
        default = name;
        description = "File name of the key in `destDir` (default: the attribute name).";
      };
      text = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "The key's content. It ends up in the Nix store of the deploying machine: prefer `keyFile` or `keyCommand` for secrets.";
      };
      keyFile = mkOption {
        type = types.nullOr (types.either types.str types.path);
        default = null;
        # A path value would be copied into the Nix store; keep it a string.
        apply = v: if v == null then null else toString v;
        description = "A file on the deploying machine whose content is the key (never copied into the Nix store).";
      };
      keyCommand = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        description = "A command (argument list) run on the deploying machine whose standard output is the key.";
      };
      destDir = mkOption {
        type = types.str;
        default = "/run/keys";
        description = "Directory on the host where the key is written.";
      };
      user = mkOption {
        type = types.str;
        default = "root";
        description = "Owner of the key file on the host.";
      };
      group = mkOption {
        type = types.str;
        default = "root";
        description = "Group of the key file on the host.";
      };
      permissions = mkOption {
        type = types.strMatching "[0-7]{3,4}";
        default = "0600";
        description = "Octal mode of the key file on the host.";
      };
      uploadAt = mkOption {
        type = types.enum [ "pre-activation" "post-activation" ];
        default = "pre-activation";
        description = "Whether the key is written before or after the new system is activated.";
      };
    };
  };
in
{
  options.deployment = {
    targetHost = mkOption {
      type = types.nullOr (types.strMatching hostPattern);
      default = null;
      example = "web1.example.com";
      description = ''
        SSH destination of the host: a name from your ssh configuration, a DNS
        name or an address. null means the configuration's attribute name
        (nixosConfigurations.NAME), so `Host NAME` blocks in ~/.ssh/config apply.
        (Not networking.hostName: NixOS defaults that to "nixos".)
      '';
    };
    targetPort = mkOption {
      type = types.nullOr types.port;
      default = null;
      example = 2222;
      description = "SSH port of the host; null means the port from your ssh configuration (22 by default).";
    };
    targetUser = mkOption {
      type = types.strMatching userPattern;
      default = "root";
      example = "deploy";
      description = "Login user on the host. A user other than root runs the privileged steps through `sudo -n`.";
    };
    tags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "web" "eu" ];
      description = "Labels for selecting hosts on skiff's command line (`@web`).";
    };
    critical = mkOption {
      type = types.bool;
      default = false;
      description = "Deploy this host last, and only after every other selected host succeeded.";
    };
    buildHost = mkOption {
      type = types.nullOr (types.strMatching "([a-z_][a-z0-9_.-]*@)?${hostPattern}");
      default = null;
      example = "builder@build1.example.com";
      description = "Where the host's system is built (`[USER@]HOST` over ssh); null means the deploying machine.";
    };
    # colmena's other per-host settings, so that a hive's configurations
    # evaluate unchanged with this module.
    buildOnTarget = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Build the host's system on the host itself (colmena's setting): the
        derivations go to the host, which builds them, and nothing is copied
        from the deploying machine. The host is then its own build host, as
        with buildHost; set one of the two. `skiff build` still builds here.
      '';
    };
    privilegeEscalationCommand = mkOption {
      type = types.listOf types.str;
      default = [ "sudo" "-H" "--" ];
      description = ''
        How a login other than root gains root (colmena's setting). skiff
        runs sudo its own way (`sudo -n`, or with --ask-sudo-password its
        wrapper that hands sudo the password), so a command that is not sudo
        is refused before any host is touched.
      '';
    };
    allowLocalDeployment = mkOption {
      type = types.bool;
      default = false;
      description = ''
        colmena's guard for `colmena apply-local`, accepted so that hives
        evaluate unchanged. skiff deploys the machine it runs on only when
        asked with `skiff deploy --local`, and does not read this setting.
      '';
    };
    sshOptions = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "-p" "2222" ];
      description = ''
        Extra ssh arguments (colmena's setting). skiff hands ssh no argument
        from the flake but a port (`-p N`, `-o Port=N`), which it takes as
        targetPort; any other option is refused, with the ~/.ssh/config
        lines that say the same to skiff's ssh. Options that turn host key
        checking off are refused for what they are.
      '';
    };
    noSubstitute = mkOption {
      type = types.bool;
      default = false;
      description = ''
        colmena's setting, accepted so that hives evaluate unchanged and not
        read: skiff lets a host fetch from its substituters only when asked
        with `skiff deploy --use-substitutes`.
      '';
    };
    replaceUnknownProfiles = mkOption {
      type = types.bool;
      default = true;
      description = ''
        colmena's setting, accepted so that hives evaluate unchanged and not
        read: skiff always adds a generation to the system profile, as
        nixos-rebuild does, and keeps who deployed what (`skiff history`).
      '';
    };
    healthChecks = mkOption {
      default = { };
      description = "Checks run after activation; when one fails, the host returns to its previous system.";
      type = types.submodule {
        options = {
          commands = mkOption {
            type = types.listOf (types.strMatching ".*[^[:space:]].*");
            default = [ ];
            example = [ "systemctl is-active nginx" ];
            description = "Commands run on the host (`sh -c`, as root); a non-zero exit status fails the check.";
          };
          urls = mkOption {
            type = types.listOf (types.strMatching "https?://[^/?#]+.*");
            default = [ ];
            example = [ "https://web1.example.com/health" ];
            description = "HTTP(S) URLs fetched by skiff from the deploying machine; a 4xx or 5xx answer fails the check.";
          };
          timeout = mkOption {
            type = types.ints.between 1 3600;
            default = 10;
            description = "Seconds each check is retried before it counts as failed.";
          };
        };
      };
    };
    keys = mkOption {
      type = types.attrsOf (types.submodule keyOptions);
      default = { };
      description = ''
        Secrets written on the host by skiff, in colmena's schema. Their
        content is read on the deploying machine at deploy time (text,
        keyFile or keyCommand) and travels over ssh on standard input: it
        never enters the Nix store (except `text`, which is part of the
        configuration), argv, logs or the history. Pre-activation keys are
        written before the new system is activated, post-activation keys
        after a confirmed deploy; `skiff upload-keys` writes them alone.
      '';
    };
  };

  config.assertions = map
    (n:
      let k = config.deployment.keys.${n}; in {
        assertion = builtins.length (builtins.filter (v: v != null) [ k.text k.keyFile k.keyCommand ]) == 1;
        message = "deployment.keys.${n}: set exactly one of text, keyFile and keyCommand";
      })
    (builtins.attrNames config.deployment.keys);
}
