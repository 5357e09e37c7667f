package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/netns"
)

// WorkloadConfig describes a workload to run.
type WorkloadConfig struct {
	Namespace string // default "default"
	Name      string
	Node      string
	Labels    map[string]string
	// Serve lists echo servers, "tcp:PORT" or "udp:PORT".
	Serve []string
	// IPs are wanted addresses (at most one per family); families without
	// one get an address from IPAM.
	IPs []netip.Addr
	// Binary runs the echo servers; default this executable.
	Binary string
	// Timeout bounds Run; default 30s.
	Timeout time.Duration
}

// ParseServe checks a list of "tcp:PORT" and "udp:PORT".
func ParseServe(specs []string) error {
	for _, s := range specs {
		proto, port, ok := strings.Cut(s, ":")
		if n, err := strconv.Atoi(port); !ok || (proto != "tcp" && proto != "udp") || err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("serve %q: want tcp:PORT or udp:PORT", s)
		}
	}
	return nil
}

// Run creates a workload on one of the lab's nodes: a namespace, attached
// by Tabby's CNI plugin (ADD, run from the node's namespace, see cni.go),
// which gives it eth0 with a /32 (and a /128) from IPAM, a veth to the
// node and a WorkloadEndpoint with the given labels and the open profile
// lab-open, and returns once the node's agent has programmed the
// endpoint; then, optionally, echo servers in it.
func Run(ctx context.Context, lab string, cfg WorkloadConfig) (wl *Workload, err error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	var errs []error
	for what, v := range map[string]string{"name": cfg.Name, "namespace": cfg.Namespace} {
		if !wlNameRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("workload %s %q: must be 1-32 characters a-z, 0-9 and '-'", what, v))
		}
	}
	errs = append(errs, ParseServe(cfg.Serve))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	// Reserve the workload in the state first, so that Down removes
	// whatever the rest creates.
	w := Workload{Namespace: cfg.Namespace, Name: cfg.Name, Node: cfg.Node, Labels: cfg.Labels, Serve: cfg.Serve}
	w.NetNS = NSPrefix + lab + "-w-" + cfg.Name
	if cfg.Namespace != "default" {
		w.NetNS = NSPrefix + lab + "-w-" + cfg.Namespace + "-" + cfg.Name
	}
	w.ContainerID = containerID(w)
	var st *State
	err = update(lab, func(s *State) error {
		st = s
		if _, ok := s.Node(cfg.Node); !ok {
			return fmt.Errorf("lab %s has no node %q", lab, cfg.Node)
		}
		if _, ok := s.Workload(w.ID()); ok {
			return fmt.Errorf("workload %s exists already", w.ID())
		}
		if slices.ContainsFunc(s.Workloads, func(o Workload) bool { return o.ContainerID == w.ContainerID }) {
			return fmt.Errorf("workload %s would have the CNI container ID %s of another workload; rename it", w.ID(), w.ContainerID)
		}
		if slices.Contains(s.Namespaces(), w.NetNS) {
			return fmt.Errorf("namespace %s is taken", w.NetNS)
		}
		s.Workloads = append(s.Workloads, w)
		return nil
	})
	if err != nil {
		return nil, err
	}
	c, err := connect(ctx, st)
	if err != nil {
		return nil, err
	}
	defer c.Store().Close()
	if len(cfg.IPs) > 0 {
		if err := reserveAddrs(ctx, c.Store(), st, w, cfg.IPs); err != nil {
			return nil, err
		}
	}
	h, err := newNS(w.NetNS)
	if err != nil {
		return nil, err
	}
	h.Close()
	if err := cniAdd(ctx, st, &w); err != nil {
		return nil, err
	}
	if w.Endpoint, err = endpointName(ctx, c, w); err != nil {
		return nil, err
	}
	if err := update(lab, func(s *State) error {
		p, _ := s.Workload(w.ID())
		*p = w
		return nil
	}); err != nil {
		return nil, err
	}
	if len(cfg.Serve) > 0 {
		bin := cfg.Binary
		if bin == "" {
			bin = self()
		}
		p, err := startDetached(filepath.Join(Dir(lab), "logs", "wl-"+cfg.Namespace+"-"+cfg.Name+".log"), w.NetNS, nil,
			bin, "lab", "serve", strings.Join(cfg.Serve, ","))
		if err != nil {
			return nil, err
		}
		w.Server = p
		if uerr := update(lab, func(s *State) error {
			q, _ := s.Workload(w.ID())
			*q = w
			return nil
		}); uerr != nil {
			return nil, uerr
		}
		if err := waitServing(ctx, w); err != nil {
			return nil, err
		}
	}
	return &w, nil
}

// reserveAddrs assigns the wanted addresses (and, for the families
// without one, addresses from IPAM) to the IPAM handle the plugin uses
// for the workload. The plugin has no way to be asked for an address, but
// it keeps the addresses its handle already holds when they are one per
// family it assigns.
func reserveAddrs(ctx context.Context, store datastore.Store, st *State, w Workload, want []netip.Addr) error {
	alloc, err := ipam.New(store, ipam.Config{})
	if err != nil {
		return err
	}
	handle := cni.HandleID(networkName, w.ContainerID, "eth0")
	attrs := map[string]string{ipam.AttrNamespace: w.Namespace}
	num4, num6 := 1, 0
	if st.IPv6 {
		num6 = 1
	}
	for _, a := range want {
		if a.Is6() && !st.IPv6 {
			return fmt.Errorf("--ip %s: lab %s has no IPv6", a, st.Name)
		}
		if err := alloc.AssignIP(ctx, ipam.AssignIPArgs{Addr: a, Node: w.Node, Handle: handle, Attrs: attrs}); err != nil {
			return fmt.Errorf("assigning %s: %w", a, err)
		}
		if a.Is4() {
			num4 = 0
		} else {
			num6 = 0
		}
	}
	if num4+num6 == 0 {
		return nil
	}
	if _, err := alloc.AutoAssign(ctx, ipam.AssignArgs{Node: w.Node, Handle: handle, Num4: num4, Num6: num6, Attrs: attrs}); err != nil {
		return fmt.Errorf("assigning addresses: %w", err)
	}
	return nil
}

// endpointName finds the name of the WorkloadEndpoint the plugin wrote
// for w.
func endpointName(ctx context.Context, c *datastore.Client, w Workload) (string, error) {
	info, _ := v1.LookupKind("WorkloadEndpoint")
	objs, _, err := c.List(ctx, info, w.Namespace)
	if err != nil {
		return "", err
	}
	for _, o := range objs {
		if wep, ok := o.(*v1.WorkloadEndpoint); ok && wep.Spec.ContainerID == w.ContainerID && wep.Spec.Node == w.Node {
			return wep.Metadata.Name, nil
		}
	}
	return "", fmt.Errorf("the CNI plugin wrote no WorkloadEndpoint for %s", w.ID())
}

// waitServing waits until the workload's echo servers answer on its
// loopback.
func waitServing(ctx context.Context, w Workload) error {
	for _, s := range w.Serve {
		proto, port, _ := strings.Cut(s, ":")
		for {
			err := echo(ctx, netns.NamedPath(w.NetNS), proto, net.JoinHostPort("127.0.0.1", port), 300*time.Millisecond)
			if err == nil {
				break
			}
			if !w.Server.Alive() {
				return fmt.Errorf("echo server of %s exited:\n%s", w.ID(), tail(w.Server.Log))
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("echo server %s of %s not answering: %v", s, w.ID(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
