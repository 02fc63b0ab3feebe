package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
)

// Class is the error class of a key that cannot be read or written.
const Class fault.Class = "keys"

// When a key is written.
const (
	PreActivation  = "pre-activation"  // before the new system is activated
	PostActivation = "post-activation" // after a confirmed activation
)

// Defaults of colmena's schema (and of nix/module.nix).
const (
	DefaultDestDir     = "/run/keys"
	DefaultUser        = "root"
	DefaultGroup       = "root"
	DefaultPermissions = "0600"
)

// CommandTimeout bounds a keyCommand: one that has not ended by then is
// stopped and the host is not deployed.
const CommandTimeout = 30 * time.Second

// commandTimeout is CommandTimeout, shortened by tests.
var commandTimeout = CommandTimeout

// Spec is one deployment.keys.NAME as the flake declares it: where its
// content comes from (exactly one of Text, KeyFile, KeyCommand) and where
// and how it is written on the host. The JSON names are the module's.
type Spec struct {
	Name        string   `json:"name"`
	Text        *string  `json:"text"`
	KeyFile     string   `json:"keyFile"`
	KeyCommand  []string `json:"keyCommand"`
	DestDir     string   `json:"destDir"`
	User        string   `json:"user"`
	Group       string   `json:"group"`
	Permissions string   `json:"permissions"`
	UploadAt    string   `json:"uploadAt"`
}

// Format prints a Spec without its text.
func (s Spec) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "key %q (%s/%s)", s.Name, s.DestDir, s.Name)
}

// MarshalJSON encodes a Spec without its text (nor a Key with its
// content, which is unexported).
func (s Spec) MarshalJSON() ([]byte, error) {
	type plain Spec
	p := plain(s)
	p.Text = nil
	return json.Marshal(p)
}

// WithDefaults fills in what the flake left unset, as colmena does; attr
// is the attribute name (the default file name).
func (s Spec) WithDefaults(attr string) Spec {
	if s.Name == "" {
		s.Name = attr
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&s.DestDir, DefaultDestDir)
	def(&s.User, DefaultUser)
	def(&s.Group, DefaultGroup)
	def(&s.Permissions, DefaultPermissions)
	def(&s.UploadAt, PreActivation)
	return s
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_@+=,][A-Za-z0-9_.@+=,-]*$`)
	compRE  = regexp.MustCompile(`^[A-Za-z0-9_.@+=,-]+$`)
	ownerRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)
	permRE  = regexp.MustCompile(`^[0-7]{3,4}$`)
)

// ValidName reports whether s can be a key's file name: no '/', no
// whitespace or control characters, not "." or "..", not option-like.
func ValidName(s string) bool { return len(s) <= 255 && nameRE.MatchString(s) && s != "." && s != ".." }

// ValidDir reports whether s can be a key's destination directory: an
// absolute path of plain components (no ".", "..", empty components,
// whitespace or shell metacharacters).
func ValidDir(s string) bool {
	if len(s) > 1024 || !strings.HasPrefix(s, "/") || s == "/" {
		return false
	}
	for _, c := range strings.Split(s[1:], "/") {
		if c == "." || c == ".." || !compRE.MatchString(c) {
			return false
		}
	}
	return true
}

// ValidOwner reports whether s can be a user or group name.
func ValidOwner(s string) bool { return len(s) <= 64 && ownerRE.MatchString(s) }

// ValidPermissions reports whether s is an octal mode such as 0600.
func ValidPermissions(s string) bool { return permRE.MatchString(s) }

// keyHint is the hint of every key setting error.
const keyHint = `in the flake: deployment.keys.NAME = { keyCommand = [ "pass" "show" "web/tls" ]; destDir = "/run/keys"; user = "root"; group = "root"; permissions = "0600"; uploadAt = "pre-activation"; }`

// Check refuses a key whose placement on the host would be unsafe or
// meaningless: a usage error naming the host and the key, never its
// content. attr is the key's attribute name.
func (s Spec) Check(host, attr string) error {
	bad := func(format string, a ...any) error {
		return fault.New(host, fault.Usage, keyHint, "deployment.keys.%s: "+format, append([]any{attr}, a...)...)
	}
	switch {
	case !ValidName(attr) && s.Name == attr:
		return bad("invalid key name (letters, digits and _ . @ + = , -; not . or ..; no /)")
	case !ValidName(s.Name):
		return bad("invalid name %q (letters, digits and _ . @ + = , -; not . or ..; no /)", s.Name)
	case !ValidDir(s.DestDir):
		return bad("invalid destDir %q (an absolute path without . or .. components, spaces or special characters)", s.DestDir)
	case !ValidOwner(s.User):
		return bad("invalid user %q", s.User)
	case !ValidOwner(s.Group):
		return bad("invalid group %q", s.Group)
	case !ValidPermissions(s.Permissions):
		return bad("invalid permissions %q (an octal mode such as 0600)", s.Permissions)
	case s.UploadAt != PreActivation && s.UploadAt != PostActivation:
		return bad("invalid uploadAt %q (pre-activation or post-activation)", s.UploadAt)
	case s.KeyFile != "" && !strings.HasPrefix(s.KeyFile, "/"):
		return bad("keyFile %q is not an absolute path (write it as a string with an absolute path, or as a path value ./file)", s.KeyFile)
	}
	for i, a := range s.KeyCommand {
		if strings.ContainsRune(a, 0) || (i == 0 && a == "") {
			return bad("invalid keyCommand (element %d)", i+1)
		}
	}
	return nil
}

// Key is a key read on the deploying machine, ready to travel. Its content
// is unexported: it prints as its name and length only.
type Key struct {
	Spec
	data []byte
}

// New is a key with content data (for tests and callers that read keys
// themselves).
func New(s Spec, data []byte) Key { return Key{Spec: s, data: data} }

// Len is the content's length in bytes.
func (k Key) Len() int { return len(k.data) }

// Format prints a Key as its destination and length, never its content.
func (k Key) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "key %q (%s, %d bytes)", k.Name, k.Path(), len(k.data))
}

// Read reads the content of every key of host on this machine: text as
// given, keyFile from the file, keyCommand from the command's standard
// output (the command gets no input, at most CommandTimeout, and its
// output is never shown). A key that cannot be read is an error naming
// host and key; specs are sorted by name and each one must have passed
// Check.
func Read(ctx context.Context, run *command.Runner, host string, specs map[string]Spec) ([]Key, error) {
	attrs := make([]string, 0, len(specs))
	for a := range specs {
		attrs = append(attrs, a)
	}
	sort.Strings(attrs)
	var out []Key
	seen := map[string]string{}
	for _, a := range attrs {
		s := specs[a]
		if prev, ok := seen[s.Path()]; ok {
			return nil, fault.New(host, fault.Usage, keyHint, "deployment.keys.%s and deployment.keys.%s are both written to %s", prev, a, s.Path())
		}
		seen[s.Path()] = a
		data, err := readOne(ctx, run, s)
		if err != nil {
			return nil, fault.Wrap(err, host, Class, hintOf(a, s), "key %q: %v", a, err)
		}
		out = append(out, Key{Spec: s, data: data})
	}
	return out, nil
}

// Path is where the key is written on the host.
func (s Spec) Path() string { return s.DestDir + "/" + s.Name }

func hintOf(attr string, s Spec) string {
	switch {
	case s.KeyCommand != nil && s.Text == nil && s.KeyFile == "":
		return fmt.Sprintf("run \"%s\" by hand on this machine; it must print the key and exit with 0 within %s", command.Join(s.KeyCommand), CommandTimeout)
	case s.KeyFile != "" && s.Text == nil && s.KeyCommand == nil:
		return "create the file on this machine, or change deployment.keys." + attr + ".keyFile"
	}
	return keyHint
}

// readOne reads one key's content. Its errors never hold the content nor
// the command's output.
func readOne(ctx context.Context, run *command.Runner, s Spec) ([]byte, error) {
	n := 0
	if s.Text != nil {
		n++
	}
	if s.KeyFile != "" {
		n++
	}
	if s.KeyCommand != nil {
		n++
	}
	if n != 1 {
		return nil, errors.New("set exactly one of text, keyFile and keyCommand")
	}
	switch {
	case s.Text != nil:
		return []byte(*s.Text), nil
	case s.KeyFile != "":
		b, err := os.ReadFile(s.KeyFile)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("keyFile %s: %v", s.KeyFile, err)
		}
		return b, nil
	}
	if len(s.KeyCommand) == 0 {
		return nil, errors.New("keyCommand is empty")
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	res, err := run.Run(cctx, command.Cmd{Argv: s.KeyCommand, Terminal: true})
	if err != nil {
		name := command.Join(s.KeyCommand)
		var ce *command.Error
		switch {
		case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			return nil, fmt.Errorf("keyCommand %q did not end within %s", name, commandTimeout)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("keyCommand %q: %w", name, ctx.Err())
		case errors.As(err, &ce) && ce.ExitCode >= 0:
			return nil, fmt.Errorf("keyCommand %q exited with %d", name, ce.ExitCode)
		}
		return nil, fmt.Errorf("keyCommand %q could not run", name)
	}
	return res.Stdout, nil
}

// Frame is the stream keys.sh reads on the host: for each key a header
// line "key NAME DESTDIR USER GROUP PERMISSIONS LENGTH", then its content
// base64-encoded on one line; then "end COUNT". Base64 keeps every line a
// line, so the shell's read builtin reads the stream exactly, whatever the
// content. Every field is checked again here.
func Frame(ks []Key) ([]byte, error) {
	var b bytes.Buffer
	for _, k := range ks {
		if !ValidName(k.Name) || !ValidDir(k.DestDir) || !ValidOwner(k.User) || !ValidOwner(k.Group) || !ValidPermissions(k.Permissions) {
			return nil, fmt.Errorf("key %q: invalid name, destDir, user, group or permissions", k.Name)
		}
		b.WriteString(strings.Join([]string{"key", k.Name, k.DestDir, k.User, k.Group, k.Permissions, strconv.Itoa(len(k.data))}, " "))
		b.WriteByte('\n')
		b.WriteString(base64.StdEncoding.EncodeToString(k.data))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "end %d\n", len(ks))
	return b.Bytes(), nil
}

// At returns the keys written at when (PreActivation, PostActivation).
func At(ks []Key, when string) []Key {
	var out []Key
	for _, k := range ks {
		if k.UploadAt == when {
			out = append(out, k)
		}
	}
	return out
}
