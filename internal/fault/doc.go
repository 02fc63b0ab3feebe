// Package fault is skiff's error vocabulary: every failure a user can meet
// carries the host it happened on, the layer that failed (Class) and a hint
// saying what to do. The cli package prints them as
//
//	skiff: error: web1: ...
//	skiff: hint: ...
package fault
