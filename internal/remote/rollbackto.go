package remote

import "github.com/skiffdeploy/skiff/internal/transport"

// ProfileGen is one generation of the system profile, as skiff rollback
// sees it.
type ProfileGen struct {
	Number int
	Path   string // the toplevel it points at
}

func transportExec(argv []string) transport.Exec { return transport.Exec{Argv: argv} }

// ProfileGens are the system profile's generations, oldest first, of a
// state read with them (ReadSystem).
func (st State) ProfileGens() []ProfileGen {
	var gens []ProfileGen
	for _, g := range st.Gens {
		gens = append(gens, ProfileGen{Number: g.Number, Path: g.Path})
	}
	return gens
}
