package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/netns"
)

// BatchOptions say how [RunBatch] and [RemoveBatch] work through their
// workloads.
type BatchOptions struct {
	// Parallel is how many CNI ADDs (or DELs) run at once. Default 8.
	Parallel int
	// Timeout bounds each ADD or DEL. Default 30s.
	Timeout time.Duration
	// Added, if set, is called after each ADD, from the goroutine that
	// ran it (so concurrently): the workload's index in the batch, the
	// workload (with its interface and addresses when err is nil), when
	// its ADD started, and the ADD's error.
	Added func(i int, w Workload, started time.Time, err error)
}

func (o *BatchOptions) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
}

// RunBatch creates many workloads the way [Run] creates one (a namespace,
// then CNI ADD through libcni from the node's namespace with the node's
// configuration list), but with few writes of the lab's state: one to
// reserve every workload (so that [Down] removes whatever the rest
// creates), one to record the results. First every namespace is created,
// then the ADDs run, o.Parallel at a time, so a caller timing ADDs (see
// o.Added) does not time namespace creation, which a container runtime
// also does before it calls CNI. Echo servers and wanted addresses (Serve,
// IPs) are not supported.
//
// It returns the workloads whose ADD succeeded, in the order of cfgs, and
// every error. After a failure or when ctx ends, no further ADD is
// started; the workloads that were attached are recorded either way.
func RunBatch(ctx context.Context, lab string, cfgs []WorkloadConfig, o BatchOptions) (_ []Workload, err error) {
	o.defaults()
	ws := make([]Workload, len(cfgs))
	var errs []error
	for i, cfg := range cfgs {
		if cfg.Namespace == "" {
			cfg.Namespace = "default"
		}
		for what, v := range map[string]string{"name": cfg.Name, "namespace": cfg.Namespace} {
			if !wlNameRE.MatchString(v) {
				errs = append(errs, fmt.Errorf("workload %d: %s %q: must be 1-32 characters a-z, 0-9 and '-'", i, what, v))
			}
		}
		if len(cfg.Serve) > 0 || len(cfg.IPs) > 0 {
			errs = append(errs, fmt.Errorf("workload %d (%s): a batch supports neither serve nor wanted addresses (use Run)", i, cfg.Name))
		}
		w := Workload{Namespace: cfg.Namespace, Name: cfg.Name, Node: cfg.Node, Labels: cfg.Labels}
		w.NetNS = NSPrefix + lab + "-w-" + cfg.Name
		if cfg.Namespace != "default" {
			w.NetNS = NSPrefix + lab + "-w-" + cfg.Namespace + "-" + cfg.Name
		}
		w.ContainerID = containerID(w)
		ws[i] = w
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	var st *State
	err = update(lab, func(s *State) error {
		ids, cids, nss := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, w := range s.Workloads {
			ids[w.ID()], cids[w.ContainerID] = true, true
		}
		for _, ns := range s.Namespaces() {
			nss[ns] = true
		}
		for _, w := range ws {
			if _, ok := s.Node(w.Node); !ok {
				errs = append(errs, fmt.Errorf("workload %s: lab %s has no node %q", w.ID(), lab, w.Node))
			}
			if ids[w.ID()] {
				errs = append(errs, fmt.Errorf("workload %s exists already", w.ID()))
			}
			if cids[w.ContainerID] {
				errs = append(errs, fmt.Errorf("workload %s would have the CNI container ID %s of another workload; rename it", w.ID(), w.ContainerID))
			}
			if nss[w.NetNS] {
				errs = append(errs, fmt.Errorf("namespace %s is taken", w.NetNS))
			}
			ids[w.ID()], cids[w.ContainerID], nss[w.NetNS] = true, true, true
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		s.Workloads = append(s.Workloads, ws...)
		st = s
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Record whatever was attached, also when something failed.
	attached := make([]bool, len(ws))
	defer func() {
		if rerr := recordBatch(ctx, st, ws, attached); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()

	if err := parallel(ctx, len(ws), o.Parallel, false, func(i int) error {
		h, err := newNS(ws[i].NetNS)
		if err != nil {
			return err
		}
		return h.Close()
	}); err != nil {
		return nil, fmt.Errorf("creating the workloads' namespaces: %w", err)
	}

	err = parallel(ctx, len(ws), o.Parallel, false, func(i int) error {
		actx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		start := time.Now()
		err := cniAdd(actx, st, &ws[i])
		attached[i] = err == nil
		if o.Added != nil {
			o.Added(i, ws[i], start, err)
		}
		return err
	})
	var out []Workload
	for i, w := range ws {
		if attached[i] {
			out = append(out, w)
		}
	}
	return out, err
}

// recordBatch looks up the WorkloadEndpoints of the attached workloads
// (one list) and writes them, with their interfaces and addresses, into
// the lab's state.
func recordBatch(ctx context.Context, st *State, ws []Workload, attached []bool) error {
	if !slices.Contains(attached, true) {
		return nil
	}
	var errs []error
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if c, err := connect(lctx, st); err != nil {
		errs = append(errs, err)
	} else {
		info, _ := v1.LookupKind("WorkloadEndpoint")
		objs, _, err := c.List(lctx, info, "")
		c.Store().Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the workload endpoints: %w", err))
		}
		type key struct{ ns, cid, node string }
		names := map[key]string{}
		for _, o := range objs {
			if wep, ok := o.(*v1.WorkloadEndpoint); ok {
				names[key{wep.Metadata.Namespace, wep.Spec.ContainerID, wep.Spec.Node}] = wep.Metadata.Name
			}
		}
		for i := range ws {
			if attached[i] {
				ws[i].Endpoint = names[key{ws[i].Namespace, ws[i].ContainerID, ws[i].Node}]
			}
		}
	}
	errs = append(errs, update(st.Name, func(s *State) error {
		for i, w := range ws {
			if p, ok := s.Workload(w.ID()); ok && attached[i] {
				*p = w
			}
		}
		return nil
	}))
	return errors.Join(errs...)
}

// RemoveBatch removes workloads of the lab (references as for
// [State.Workload]; none means all): it stops their echo servers, detaches
// them through the CNI plugin (DEL, o.Parallel at a time), deletes their
// namespaces and drops them from the state in one write. A workload whose
// DEL fails stays in the state (so that [Down] tries again), and the error
// is returned.
func RemoveBatch(ctx context.Context, lab string, refs []string, o BatchOptions) error {
	o.defaults()
	st, err := Load(lab)
	if err != nil {
		return err
	}
	var ws []Workload
	if len(refs) == 0 {
		ws = st.Workloads
	}
	for _, r := range refs {
		w, ok := st.Workload(r)
		if !ok {
			return fmt.Errorf("lab %s has no workload %q", lab, r)
		}
		ws = append(ws, *w)
	}
	var servers []*Proc
	for _, w := range ws {
		servers = append(servers, w.Server)
	}
	if err := stopAll(servers, 5*time.Second); err != nil {
		return err
	}
	removed := make([]bool, len(ws))
	errs := []error{parallel(ctx, len(ws), o.Parallel, true, func(i int) error {
		if ws[i].ContainerID != "" {
			dctx, cancel := context.WithTimeout(ctx, o.Timeout)
			err := cniDel(dctx, st, ws[i])
			cancel()
			if err != nil {
				return err
			}
		}
		if err := netns.Delete(ws[i].NetNS); err != nil {
			return err
		}
		removed[i] = true
		return nil
	})}
	gone := map[string]bool{}
	for i, w := range ws {
		if removed[i] {
			gone[w.ID()] = true
		}
	}
	errs = append(errs, update(lab, func(s *State) error {
		s.Workloads = slices.DeleteFunc(s.Workloads, func(w Workload) bool { return gone[w.ID()] })
		return nil
	}))
	return errors.Join(errs...)
}

// parallel runs fn(0) … fn(n-1), at most width at a time. Once ctx is
// done, and after the first error unless keepGoing, it starts no more
// calls; it returns the
// errors of the calls that ran (at most 10 of them, and a count of the
// rest) and ctx's error if calls were left out because of it.
func parallel(ctx context.Context, n, width int, keepGoing bool, fn func(i int) error) error {
	var (
		mu     sync.Mutex
		errs   []error
		failed int
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, max(width, 1))
	skipped := false
	for i := range n {
		mu.Lock()
		stop := failed > 0 && !keepGoing
		mu.Unlock()
		if stop {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			skipped = true
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				failed++
				if len(errs) < 10 {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed > len(errs) {
		errs = append(errs, fmt.Errorf("and %d more errors", failed-len(errs)))
	}
	if skipped {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
