package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// readSudoPassword asks once for the sudo password: with hidden input on
// a terminal, else the first line of standard input (for scripts). The
// password is kept in memory only, and given to sudo on standard input.
func readSudoPassword(g *globals) (string, error) {
	if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(g.stderr, "skiff: sudo password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return "", fmt.Errorf("read sudo password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(g.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", usageError{fmt.Errorf("--ask-sudo-password: no password on standard input")}
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usageError{fmt.Errorf("--ask-sudo-password: the password is empty")}
	}
	return pw, nil
}
