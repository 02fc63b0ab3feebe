package remote

import (
	"bufio"
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/transport"
)

// ProfileGen is one generation of the system profile, as skiff rollback
// sees it.
type ProfileGen struct {
	Number int
	Path   string // the toplevel it points at
}

// profileGensScript prints "N TOPLEVEL" for each system generation.
const profileGensScript = `for l in /nix/var/nix/profiles/system-*-link; do
	[ -e "$l" ] || continue
	n=${l##*/system-}; n=${n%-link}
	printf '%s %s\n' "$n" "$(readlink -f "$l")"
done`

func transportExec(argv []string) transport.Exec { return transport.Exec{Argv: argv} }

// ProfileGens lists the system profile's generations, oldest first.
func (h *Host) ProfileGens(ctx context.Context) ([]ProfileGen, error) {
	res, err := h.run(ctx, "list system generations", transportExec(h.priv("sh", "-c", profileGensScript)))
	if err != nil {
		return nil, err
	}
	return parseProfileGens(string(res.Stdout)), nil
}

func parseProfileGens(out string) []ProfileGen {
	var gens []ProfileGen
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		n, p, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		num, err := strconv.Atoi(n)
		if !ok || err != nil || !strings.HasPrefix(p, "/") {
			continue
		}
		gens = append(gens, ProfileGen{Number: num, Path: p})
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].Number < gens[j].Number })
	return gens
}
