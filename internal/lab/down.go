package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// Down stops every process of the lab name (by recorded PID), detaches
// every workload through the CNI plugin (DEL), deletes every namespace it
// created and removes its directory. It goes on past errors and reports
// them all; a lab that does not exist is an error. A failed DEL is only
// passed to warn (if not nil): the workload's namespace, and the
// datastore with its endpoint and addresses, go away with the lab anyway,
// and a lab whose datastore is broken must still come down.
func Down(name string, warn func(error)) error {
	if err := CheckName(name); err != nil {
		return err
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := Load(name)
	if err != nil {
		if _, serr := os.Stat(Dir(name)); serr == nil {
			// A lab that failed before it wrote its state has nothing
			// else to remove.
			return os.RemoveAll(Dir(name))
		}
		return err
	}
	var errs []error
	const grace = 5 * time.Second
	var servers, agents []*Proc
	for _, w := range st.Workloads {
		servers = append(servers, w.Server)
	}
	for _, n := range st.Nodes {
		agents = append(agents, n.Agent)
	}
	for _, t := range st.ToRs {
		agents = append(agents, t.Bird) // the ToRs' BIRD, with the agents
	}
	errs = append(errs, stopAll(servers, grace))
	detach(st, warn)
	errs = append(errs, stopAll(agents, grace), stopAll([]*Proc{st.Relay, st.Datastore}, grace))
	for _, ns := range st.Namespaces() {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Keep the state so that Down can be run again.
		return fmt.Errorf("taking lab %s down: %w", name, err)
	}
	return os.RemoveAll(Dir(name))
}

// delTimeout bounds the DEL of each workload in Down.
const delTimeout = 15 * time.Second

// detach runs CNI DEL for every workload the plugin attached.
func detach(st *State, warn func(error)) {
	if warn == nil {
		warn = func(error) {}
	}
	if !st.Datastore.Alive() {
		if len(st.Workloads) > 0 {
			warn(fmt.Errorf("lab %s: the datastore is not running, so the workloads are not detached through the CNI plugin (DEL); their namespaces are deleted", st.Name))
		}
		return
	}
	// Several DELs at a time (a lab may have hundreds of workloads); each
	// failure is reported and the rest go on.
	var mu sync.Mutex
	_ = parallel(context.Background(), len(st.Workloads), detachParallel, true, func(i int) error {
		w := st.Workloads[i]
		if w.ContainerID == "" {
			return nil // reserved, never attached
		}
		ctx, cancel := context.WithTimeout(context.Background(), delTimeout)
		defer cancel()
		if err := cniDel(ctx, st, w); err != nil {
			mu.Lock()
			warn(err)
			mu.Unlock()
		}
		return nil
	})
}

// detachParallel is how many CNI DELs Down runs at once.
const detachParallel = 8

// Namespaces lists every namespace of the lab: workloads, nodes, ToRs,
// fabric.
func (s *State) Namespaces() []string {
	var out []string
	for _, w := range s.Workloads {
		out = append(out, w.NetNS)
	}
	for _, n := range s.Nodes {
		out = append(out, n.NetNS)
	}
	for _, t := range s.ToRs {
		out = append(out, t.NetNS)
	}
	if s.FabricNS != "" {
		out = append(out, s.FabricNS)
	}
	return out
}

// Procs lists every process of the lab.
func (s *State) Procs() []*Proc {
	var out []*Proc
	for _, w := range s.Workloads {
		if w.Server != nil {
			out = append(out, w.Server)
		}
	}
	for _, n := range s.Nodes {
		if n.Agent != nil {
			out = append(out, n.Agent)
		}
	}
	for _, t := range s.ToRs {
		if t.Bird != nil {
			out = append(out, t.Bird)
		}
	}
	for _, p := range []*Proc{s.Relay, s.Datastore} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}
