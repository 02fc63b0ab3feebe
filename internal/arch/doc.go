// Package arch holds no code: its test enforces the direction of
// dependencies between skiff's packages (cli → fleet → {activate, doctor,
// diff, history} → remote → transport; flake → nix), so that domain
// packages never reach for the command line or the renderers.
package arch
