package nix

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// CanExport reports whether Export can write these paths itself: a Linux
// store (on macOS, Nix stores some names with a case hack that a NAR
// leaves out) where each path is at its own place (not a chroot store),
// known from nix path-info (its NAR hash, references and deriver).
func CanExport(infos []PathInfo) bool {
	if runtime.GOOS != "linux" || len(infos) == 0 {
		return false
	}
	for _, i := range infos {
		if i.NarHash == "" {
			return false
		}
		if _, err := os.Lstat(i.Path); err != nil {
			return false
		}
	}
	return true
}

// Export writes the store paths of infos to w as nix-store --export does
// (what nix-store --import reads): each path's NAR, its references and its
// deriver, the paths in an order where every reference within infos comes
// before the path that refers to it. It reads the store itself instead of
// starting nix-store: one process less on this machine for each host. As
// nix-store does, it refuses a path whose NAR no longer has the hash the
// store recorded (a corrupted store), before that path's trailer, so that
// the reader sees a cut stream and imports nothing of it.
func Export(ctx context.Context, w io.Writer, infos []PathInfo) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	e := &exporter{ctx: ctx}
	for _, info := range exportOrder(infos) {
		e.w = bw
		e.writeNum(1)
		h := sha256.New()
		e.w = io.MultiWriter(bw, h)
		e.writeString("nix-archive-1")
		e.dump(info.Path)
		if e.err != nil {
			return e.err
		}
		if err := checkNarHash(info, h); err != nil {
			_ = bw.Flush() // the reader sees the NAR cut before its trailer
			return err
		}
		e.w = bw
		e.writeNum(exportMagic)
		e.writeString(info.Path)
		refs := append([]string(nil), info.References...)
		sort.Strings(refs)
		e.writeNum(uint64(len(refs)))
		for _, r := range refs {
			e.writeString(r)
		}
		e.writeString(info.Deriver)
		e.writeNum(0) // no signature
		if e.err != nil {
			return e.err
		}
	}
	e.w = bw
	e.writeNum(0)
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// exportMagic ends each path's NAR in an export stream.
const exportMagic = 0x4558494e

// exportOrder sorts infos so that each path's references among them come
// first (a path may refer to itself); ties go by path, as a stable order.
func exportOrder(infos []PathInfo) []PathInfo {
	byPath := make(map[string]PathInfo, len(infos))
	for _, i := range infos {
		byPath[i.Path] = i
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	seen := make(map[string]bool, len(paths))
	out := make([]PathInfo, 0, len(paths))
	var visit func(p string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		refs := append([]string(nil), byPath[p].References...)
		sort.Strings(refs)
		for _, r := range refs {
			if _, ok := byPath[r]; ok && r != p {
				visit(r)
			}
		}
		out = append(out, byPath[p])
	}
	for _, p := range paths {
		visit(p)
	}
	return out
}

// checkNarHash compares the NAR just written with the hash nix path-info
// gave ("sha256-BASE64", or "sha256:BASE32" from older releases); an
// unknown form, or a hash of zeros (none recorded), is not checked, as
// nix-store --export does not.
func checkNarHash(info PathInfo, h hash.Hash) error {
	sum := h.Sum(nil)
	var want []byte
	switch {
	case strings.HasPrefix(info.NarHash, "sha256-"):
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(info.NarHash, "sha256-"))
		if err != nil {
			return nil
		}
		want = b
	case strings.HasPrefix(info.NarHash, "sha256:"):
		b, ok := decodeNix32(strings.TrimPrefix(info.NarHash, "sha256:"))
		if !ok {
			return nil
		}
		want = b
	default:
		return nil
	}
	if bytes.Equal(want, make([]byte, len(want))) {
		return nil // all zeros: Nix recorded no hash, and does not check either
	}
	if !bytes.Equal(sum, want) {
		return fmt.Errorf("the contents of %s changed since Nix registered it (its NAR hash differs): the store is corrupted", info.Path)
	}
	return nil
}

// nix32Alphabet is Nix's base-32 alphabet (no e, o, u, t).
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// decodeNix32 decodes Nix's base 32 (least significant digit last) of a
// SHA-256 hash.
func decodeNix32(s string) ([]byte, bool) {
	const size = sha256.Size
	if len(s) != (size*8-1)/5+1 {
		return nil, false
	}
	out := make([]byte, size)
	for n := 0; n < len(s); n++ {
		c := strings.IndexByte(nix32Alphabet, s[len(s)-n-1])
		if c < 0 {
			return nil, false
		}
		b := n * 5
		i, j := b/8, b%8
		out[i] |= byte(c << j)
		if i+1 < size {
			out[i+1] |= byte(c >> (8 - j))
		} else if c>>(8-j) != 0 {
			return nil, false
		}
	}
	return out, true
}

// exporter writes NAR and export fields, keeping the first error.
type exporter struct {
	ctx context.Context
	w   io.Writer
	err error
	num [8]byte
}

func (e *exporter) writeNum(n uint64) {
	if e.err != nil {
		return
	}
	binary.LittleEndian.PutUint64(e.num[:], n)
	_, e.err = e.w.Write(e.num[:])
}

// writeString writes a length, the bytes and zeros to a multiple of 8.
func (e *exporter) writeString(s string) {
	e.writeNum(uint64(len(s)))
	if e.err != nil {
		return
	}
	if _, e.err = io.WriteString(e.w, s); e.err == nil {
		e.pad(int64(len(s)))
	}
}

func (e *exporter) pad(n int64) {
	if e.err != nil || n%8 == 0 {
		return
	}
	var zeros [8]byte
	_, e.err = e.w.Write(zeros[:8-n%8])
}

// dump writes the NAR of the file tree at p: a regular file (executable
// or not), a symlink, or a directory whose entries go by name, bytewise.
func (e *exporter) dump(p string) {
	if e.err != nil {
		return
	}
	if e.err = e.ctx.Err(); e.err != nil {
		return
	}
	st, err := os.Lstat(p)
	if err != nil {
		e.err = err
		return
	}
	e.writeString("(")
	switch mode := st.Mode(); {
	case mode.IsRegular():
		e.writeString("type")
		e.writeString("regular")
		if mode&0o100 != 0 {
			e.writeString("executable")
			e.writeString("")
		}
		e.writeString("contents")
		e.contents(p, st.Size())
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			e.err = err
			return
		}
		e.writeString("type")
		e.writeString("symlink")
		e.writeString("target")
		e.writeString(target)
	case mode.IsDir():
		e.writeString("type")
		e.writeString("directory")
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			e.err = err
			return
		}
		for _, ent := range entries {
			e.writeString("entry")
			e.writeString("(")
			e.writeString("name")
			e.writeString(ent.Name())
			e.writeString("node")
			e.dump(filepath.Join(p, ent.Name()))
			e.writeString(")")
		}
	default:
		e.err = fmt.Errorf("%s: a file of a kind a NAR cannot hold (%v)", p, mode)
		return
	}
	e.writeString(")")
}

// contents writes a regular file's size, bytes and padding; a file whose
// size changed while it was read is an error.
func (e *exporter) contents(p string, size int64) {
	e.writeNum(uint64(size))
	if e.err != nil {
		return
	}
	f, err := os.Open(p)
	if err != nil {
		e.err = err
		return
	}
	defer f.Close()
	n, err := io.Copy(e.w, io.LimitReader(f, size))
	if err != nil {
		e.err = err
		return
	}
	if n != size {
		e.err = errors.New(p + ": the file got shorter while it was read")
		return
	}
	e.pad(size)
}
