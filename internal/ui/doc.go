// Package ui renders fleet events and results for people: plain
// timestamped lines on standard error, and the final summary table on
// standard output. Colour, when used, never carries meaning alone.
package ui
