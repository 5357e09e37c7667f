// Package lab runs a multi-node Tabby cluster inside network namespaces on
// one machine, for demos and end-to-end tests.
//
// A lab named NAME consists of:
//
//   - a fabric namespace tl-NAME-fab holding a bridge br0 with the fabric
//     subnets 172.31.IDX.0/24 (and fd00:ffff:IDX::/64 with IPv6); the
//     datastore (`tabby datastore run`) runs in it on 172.31.IDX.254;
//   - one namespace per node, tl-NAME-nK, attached to the bridge by a veth
//     (eth0, 172.31.IDX.K/24) and running `tabby agent` inside it;
//   - with the tor fabric instead, one namespace per rack, tl-NAME-tR,
//     running BIRD as the rack's top-of-rack router, whose bridge the
//     rack's nodes attach to (see tor.go);
//   - a relay process in the machine's namespace that listens on a
//     kernel-chosen loopback port and forwards to the datastore, so that
//     the CLI (through the context lab-NAME) reaches the lab;
//   - one namespace per workload, tl-NAME-w-WORKLOAD, attached to its
//     node by Tabby's CNI plugin (run through libcni from the node's
//     namespace), optionally running echo servers;
//   - the state directory /run/tabby/lab/NAME (state.json, logs, the
//     datastore's data, the agents' status sockets, and cni/: the plugins,
//     one network configuration list per node, and libcni's cache).
//
// Every process the lab starts is detached (setsid) and recorded in
// state.json with its PID and start time; [Down] stops exactly those
// processes, by PID, and removes every namespace and the directory.
// Nothing else in the machine's own namespace is changed.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"
)

// BaseDir holds one directory per lab.
const BaseDir = "/run/tabby/lab"

// NSPrefix starts the name of every namespace a lab creates.
const NSPrefix = "tl-"

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$`)

// CheckName reports whether name can name a lab (and be part of
// namespace names): 1 to 16 lower-case letters, digits and dashes.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: must be 1-16 characters a-z, 0-9 and '-', not starting or ending with '-'", name)
	}
	return nil
}

var wlNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Dir is the state directory of the lab name.
func Dir(name string) string { return filepath.Join(BaseDir, name) }

func statePath(name string) string { return filepath.Join(Dir(name), "state.json") }

// State is what a lab consists of; it is kept in Dir(name)/state.json.
type State struct {
	Name    string    `json:"name"`
	Index   int       `json:"index"`
	Created time.Time `json:"created"`
	Fabric  string    `json:"fabric"`
	IPv6    bool      `json:"ipv6"`
	Pool4   string    `json:"pool4"`
	Pool6   string    `json:"pool6,omitempty"`
	// FabricNS is the namespace of the fabric bridge and the datastore.
	FabricNS string `json:"fabricNS"`
	// DatastoreURL is the datastore's client URL inside the lab's
	// namespaces; ClientURL is the relay's in the machine's namespace.
	DatastoreURL string `json:"datastoreURL"`
	ClientURL    string `json:"clientURL,omitempty"`
	// Datastore and Relay are the lab's own processes.
	Datastore *Proc      `json:"datastore,omitempty"`
	Relay     *Proc      `json:"relay,omitempty"`
	Nodes     []Node     `json:"nodes"`
	Workloads []Workload `json:"workloads,omitempty"`
	// ToRs are the top-of-rack routers of --fabric tor, one per rack.
	ToRs []ToR `json:"tors,omitempty"`
	// RouteReflectors is the number of route reflectors (n1…nR) of a
	// lab without the node-to-node mesh; 0 with the mesh.
	RouteReflectors int `json:"routeReflectors,omitempty"`
}

// Node is one node of a lab.
type Node struct {
	Name   string     `json:"name"`
	NetNS  string     `json:"netns"`
	IPv4   netip.Addr `json:"ipv4"`
	IPv6   netip.Addr `json:"ipv6,omitzero"`
	Socket string     `json:"statusSocket"`
	Agent  *Proc      `json:"agent,omitempty"`
	// Rack (r1, r2, …) and AS are set with --fabric tor: the node's
	// rack and its own AS number.
	Rack string `json:"rack,omitempty"`
	AS   uint32 `json:"as,omitempty"`
}

// Workload is a workload namespace attached to a node.
type Workload struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node"`
	NetNS     string `json:"netns"`
	// ContainerID is the workload's CNI container ID, Endpoint the name
	// of the WorkloadEndpoint the CNI plugin wrote (in Namespace), and
	// Interface its host-side interface.
	ContainerID string            `json:"containerID"`
	Endpoint    string            `json:"endpoint,omitempty"`
	Interface   string            `json:"interface"`
	IPv4        netip.Addr        `json:"ipv4,omitzero"`
	IPv6        netip.Addr        `json:"ipv6,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
	Serve       []string          `json:"serve,omitempty"`
	Server      *Proc             `json:"server,omitempty"`
}

// ID is "namespace/name".
func (w Workload) ID() string { return w.Namespace + "/" + w.Name }

// Addr returns the workload's address of family 4 or 6 (invalid if none).
func (w Workload) Addr(family int) netip.Addr {
	if family == 6 {
		return w.IPv6
	}
	return w.IPv4
}

// Node returns the node called name.
func (s *State) Node(name string) (*Node, bool) {
	i := slices.IndexFunc(s.Nodes, func(n Node) bool { return n.Name == name })
	if i < 0 {
		return nil, false
	}
	return &s.Nodes[i], true
}

// Workload finds a workload by "name" (namespace default) or
// "namespace/name".
func (s *State) Workload(ref string) (*Workload, bool) {
	ns, name := splitRef(ref)
	i := slices.IndexFunc(s.Workloads, func(w Workload) bool { return w.Namespace == ns && w.Name == name })
	if i < 0 {
		return nil, false
	}
	return &s.Workloads[i], true
}

func splitRef(ref string) (ns, name string) {
	for i := range len(ref) {
		if ref[i] == '/' {
			return ref[:i], ref[i+1:]
		}
	}
	return "default", ref
}

// Load reads the state of the lab name.
func Load(name string) (*State, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(statePath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %q does not exist (tabby lab ls lists the labs)", name)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", statePath(name), err)
	}
	return &s, nil
}

// save writes s atomically.
func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(s.Name))
}

// List returns the states of every lab, sorted by name.
func List() ([]*State, error) {
	entries, err := os.ReadDir(BaseDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*State
	for _, e := range entries {
		if !e.IsDir() || CheckName(e.Name()) != nil {
			continue
		}
		s, err := Load(e.Name())
		if err != nil {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// lock takes an exclusive lock on BaseDir/.lock; every change of any
// lab's state happens under it. The returned function releases it.
func lock() (func(), error) {
	if err := os.MkdirAll(BaseDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(BaseDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// update loads the lab's state under the lock, lets fn change it and
// saves it, even when fn fails part-way (so that what fn created is
// recorded for Down).
func update(name string, fn func(*State) error) error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	s, err := Load(name)
	if err != nil {
		return err
	}
	ferr := fn(s)
	return errors.Join(ferr, s.save())
}
