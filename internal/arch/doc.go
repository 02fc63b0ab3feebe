// Package arch holds no code: its tests enforce the direction of
// dependencies between skiff's packages (cli → fleet → {activate, doctor,
// diff, history} → remote → transport; flake → nix), so that domain
// packages never reach for the command line or the renderers, and that
// no loop is bounded by a hand-made semaphore (errgroup's SetLimit, or
// x/sync/semaphore where a wait must be cancellable).
package arch
