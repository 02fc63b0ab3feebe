package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// Fan-out through a binary cache. --use-substitutes copies with nix copy
// --substitute-on-destination: each target first fetches what it can from
// its own substituters, and this machine sends only the rest. --cache URL
// adds one push of every built system to the binary cache URL (a file://
// directory served by any static web server, s3://, or another store nix
// copy writes to) before any host is copied to, and then copies as
// --use-substitutes does: with the cache among the targets' substituters
// (and its signing key trusted there: nix.settings.substituters and
// trusted-public-keys), the deployer's uplink carries each path once, not
// once per host. skiff does not change the targets' nix settings.

// substitute reports whether copies let the targets substitute.
func (r *run) substitute() bool { return r.UseSubstitutes || r.Cache != "" }

// pushCache copies every built system to the binary cache, once. Systems
// built on a build host are copied from there. A failed push is reported
// and the deploy goes on: the targets then get from this machine what the
// cache lacks.
func (r *run) pushCache(ctx context.Context) {
	if r.Cache == "" {
		return
	}
	var local []string
	remote := map[string][]string{}
	r.mu.Lock()
	seen := map[string]bool{}
	for _, h := range r.hosts {
		if r.errs[h.Name] != nil || len(r.closures[h.Name]) == 0 || seen[h.OutPath] {
			continue
		}
		seen[h.OutPath] = true
		if b := r.builtOn[h.Name]; b != nil {
			remote[b.Conn.StoreURL(false)] = append(remote[b.Conn.StoreURL(false)], h.OutPath)
		} else {
			local = append(local, h.OutPath)
		}
	}
	r.mu.Unlock()
	if len(seen) == 0 {
		return
	}
	start := time.Now()
	r.report("", PhaseCopy, "pushing %d system(s) to the binary cache %s", len(seen), nix.RedactStoreURL(r.Cache))
	var errs []error
	if len(local) > 0 {
		errs = append(errs, r.push(ctx, nix.Copy{To: r.Cache, Paths: local}))
	}
	for from, paths := range remote {
		errs = append(errs, r.push(ctx, nix.Copy{From: from, To: r.Cache, Paths: paths}))
	}
	if err := errors.Join(errs...); err != nil {
		r.report("", PhaseCopy, "pushing to the binary cache failed (%v): hosts get from this machine what the cache lacks", err)
		return
	}
	r.report("", PhaseCopy, "pushed to the binary cache in %s", since(start))
}

func (r *run) push(ctx context.Context, c nix.Copy) error {
	// A build host's store is read over ssh with skiff's ssh options.
	env := []string{"NIX_SSHOPTS=" + (&transport.SSH{Options: r.SSH}).SSHOpts()}
	_, err := r.Runner.Run(ctx, command.Cmd{Argv: r.Nix.CopyArgsOf(c), Env: env})
	var ce *command.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s", command.Tail(ce.Stderr, 2))
	}
	return err
}
