// Package ui renders fleet events and results for people: a live view on
// a terminal (Bubble Tea, on standard error), plain timestamped lines on
// standard error otherwise, JSON Lines, and the final summary table on
// standard output. Colour, when used, never carries meaning alone.
package ui
