package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is DIR/lab.json: what a lab started, so that another process (skiff-lab down
// and status) can find and stop it.
type State struct {
	Dir    string      `json:"dir"`
	Subnet int         `json:"subnet"`
	Hosts  []HostState `json:"hosts"`
}

// HostState is one host of a State.
type HostState struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Dir  string `json:"dir"`
	// PID is the host's sshd listener and KeeperPID a process that keeps the host's
	// mount namespace (MountNS) alive while sshd is stopped; 0 when stopped.
	PID       int    `json:"pid"`
	KeeperPID int    `json:"keeper_pid"`
	MountNS   string `json:"mount_ns,omitempty"`
	// StoreMount is the tmpfs mounted on the host's store (HostSpec.StoreSize), if any.
	StoreMount string `json:"store_mount,omitempty"`
	StoreSize  int64  `json:"store_size,omitempty"`
}

const stateFile = "lab.json"

// ReadState reads DIR/lab.json.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &s, nil
}

func writeState(dir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), append(b, '\n'), 0o644)
}

// Running reports whether any process of the host runs: its sshd or keeper, or any
// process whose /nix is the host's store.
func (hs HostState) Running() bool {
	if alive(hs.PID, hs.MountNS) || alive(hs.KeeperPID, hs.MountNS) {
		return true
	}
	if id, err := statID(filepath.Join(hs.Dir, "nix")); err == nil {
		return len(storeProcs(id)) > 0
	}
	return false
}

// stop ends every process of the host and unmounts its store if unmount is set.
func (hs *HostState) stop(unmount bool) error {
	var errs []error
	// Trust the recorded namespace only while a recorded pid still runs in it: a
	// namespace's inode number is reused once the namespace is gone.
	ns := hs.MountNS
	if !alive(hs.PID, ns) && !alive(hs.KeeperPID, ns) {
		ns = ""
	}
	if err := killStoreProcs(filepath.Join(hs.Dir, "nix"), ns, 500*time.Millisecond); err != nil {
		errs = append(errs, fmt.Errorf("stop %s: %w", hs.Name, err))
	}
	hs.PID, hs.KeeperPID, hs.MountNS = 0, 0, ""
	if unmount && hs.StoreMount != "" {
		if err := unmountStore(hs.StoreMount); err != nil {
			errs = append(errs, fmt.Errorf("unmount store of %s: %w", hs.Name, err))
		} else {
			hs.StoreMount = ""
		}
	}
	return errors.Join(errs...)
}

// Down stops the lab recorded in DIR/lab.json, as Lab.Stop does: every process of every
// host, then the size-limited stores. It is idempotent; a DIR without lab.json is an
// error.
func Down(dir string) error {
	s, err := ReadState(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := range s.Hosts {
		if err := s.Hosts[i].stop(true); err != nil {
			errs = append(errs, err)
		}
	}
	if err := writeState(dir, s); err != nil {
		errs = append(errs, fmt.Errorf("write lab state: %w", err))
	}
	return errors.Join(errs...)
}
