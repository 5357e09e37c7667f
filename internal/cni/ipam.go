package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/ipam/block"
)

// addressSource gives attachments their addresses: Tabby's IPAM
// in-process, or a delegated IPAM plugin.
type addressSource interface {
	// assign returns the attachment's addresses, assigning them if it has
	// none, and DNS settings the source has (a delegated plugin's).
	// Idempotent for Tabby's IPAM; a delegated plugin is as idempotent as
	// it is.
	assign(ctx context.Context, a attachment) ([]netip.Addr, *types.DNS, error)
	// release frees the attachment's addresses. Idempotent.
	release(ctx context.Context, a attachment) error
	// check verifies that the attachment holds addrs. Read-only.
	check(ctx context.Context, a attachment, addrs []netip.Addr) error
	// A command uses its source from one goroutine; sources of different
	// processes coordinate through the datastore and the node's lock.
}

// tabbyIPAM is Tabby's IPAM, in-process. Its writes on one node are
// serialized by a lock file: without it, concurrent CNI processes on a
// node would race for the same block and lose compare-and-swaps until
// they give up.
type tabbyIPAM struct {
	alloc *ipam.Allocator
	ra    *readAhead // the Allocator's store
	store datastore.Store
	conf  IPAMConf
	node  string
	lock  string // lock file path
	log   *slog.Logger
	// endpointAttrs stores the WorkloadEndpoint's namespace and name with
	// the addresses (the main plugin writes the endpoint; the IPAM plugin
	// alone does not know it).
	endpointAttrs bool
}

func newTabbyIPAM(store datastore.Store, conf IPAMConf, node, lock string, endpointAttrs bool, log *slog.Logger) (*tabbyIPAM, error) {
	ra := newReadAhead(store)
	alloc, err := ipam.New(ra, ipam.Config{Logger: log})
	if err != nil {
		return nil, err
	}
	return &tabbyIPAM{alloc: alloc, ra: ra, store: store, conf: conf, node: node, lock: lock, log: log, endpointAttrs: endpointAttrs}, nil
}

// lockNode takes the node's IPAM lock and logs how long it waited for it
// and held it.
func (t *tabbyIPAM) lockNode(ctx context.Context) (unlock func(), err error) {
	start := time.Now()
	f, err := lockFile(ctx, t.lock)
	if err != nil {
		return nil, err
	}
	got := time.Now()
	return func() {
		f.Close() // drops the lock
		t.log.Debug("IPAM lock", "waited", got.Sub(start), "held", time.Since(got))
	}, nil
}

// lockPath is the node's IPAM lock file: next to the agent's status
// socket, in the node's run directory.
func lockPath(agentSocket string) string {
	return filepath.Join(filepath.Dir(agentSocket), "ipam.lock")
}

// assign takes the lock only for writes. Reading the handle first needs
// none: the runtime never runs two commands for one attachment at once.
func (t *tabbyIPAM) assign(ctx context.Context, a attachment) ([]netip.Addr, *types.DNS, error) {
	n4, n6 := t.conf.Want()
	h := a.handle()
	have, err := t.alloc.IPsByHandle(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	if len(have) > 0 {
		// An earlier ADD of this attachment: keep its addresses if they
		// are what the configuration asks for, else start again.
		c4 := len(slices.DeleteFunc(slices.Clone(have), func(a netip.Addr) bool { return !a.Is4() }))
		if c4 == n4 && len(have)-c4 == n6 {
			return have, nil, nil
		}
		t.ra.prefetchRelease(ctx, h)
	}
	t.ra.prefetchAssign(ctx, t.node)
	if pools, ok := t.ra.names(datastore.Prefix{Kind: "IPPool"}); ok {
		for _, p := range []struct {
			field string
			names []string
		}{{"ipam.ipv4_pools", t.conf.IPv4Pools}, {"ipam.ipv6_pools", t.conf.IPv6Pools}} {
			for _, n := range p.names {
				if !slices.Contains(pools, n) {
					return nil, nil, fmt.Errorf("%w: %s names the IPPool %q, which does not exist", ipam.ErrNoPool, p.field, n)
				}
			}
		}
	}
	unlock, err := t.lockNode(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if len(have) > 0 {
		if _, err := t.alloc.ReleaseHandle(ctx, h); err != nil {
			return nil, nil, err
		}
	}
	var attrs map[string]string
	if t.endpointAttrs {
		attrs = map[string]string{ipam.AttrNamespace: a.namespace, ipam.AttrEndpoint: a.name}
	}
	res, err := t.alloc.AutoAssign(ctx, ipam.AssignArgs{
		Node: t.node, Handle: h, Num4: n4, Num6: n6, Attrs: attrs,
		IPv4Pools: t.conf.IPv4Pools, IPv6Pools: t.conf.IPv6Pools,
	})
	if err != nil {
		return nil, nil, err
	}
	return append(res.IPv4, res.IPv6...), nil, nil
}

func (t *tabbyIPAM) release(ctx context.Context, a attachment) error {
	return t.releaseHandles(ctx, []string{a.handle()})
}

func (t *tabbyIPAM) releaseHandles(ctx context.Context, handles []string) error {
	for _, h := range handles {
		t.ra.prefetchRelease(ctx, h)
	}
	unlock, err := t.lockNode(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, h := range handles {
		if _, err := t.alloc.ReleaseHandle(ctx, h); err != nil {
			errs = append(errs, fmt.Errorf("releasing IPAM handle %s: %w", h, err))
		}
	}
	return errors.Join(errs...)
}

func (t *tabbyIPAM) check(ctx context.Context, a attachment, addrs []netip.Addr) error {
	have, err := t.alloc.IPsByHandle(ctx, a.handle())
	if err != nil {
		return err
	}
	slices.SortFunc(have, netip.Addr.Compare)
	want := slices.SortedFunc(slices.Values(addrs), netip.Addr.Compare)
	if !slices.Equal(have, want) {
		return fmt.Errorf("IPAM handle %s holds %v, the attachment has %v", a.handle(), have, want)
	}
	return nil
}

// gc releases the handles of network that hold addresses for this node
// and that valid (handle IDs) does not list. It finds them in the blocks:
// every allocation records its handle and node.
func (t *tabbyIPAM) gc(ctx context.Context, network string, valid map[string]bool) ([]string, error) {
	kvs, _, err := t.store.List(ctx, datastore.Prefix{Kind: ipam.KindBlock})
	if err != nil {
		return nil, fmt.Errorf("listing IPAM blocks: %w", err)
	}
	stale := map[string]bool{}
	for _, kv := range kvs {
		var b block.Block
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			continue // ipam.Check reports bad blocks
		}
		for _, al := range b.Allocated() {
			h := al.Attribute.Handle
			if strings.HasPrefix(h, network+".") && al.Attribute.Secondary[ipam.AttrNode] == t.node && !valid[h] {
				stale[h] = true
			}
		}
	}
	handles := slices.Sorted(maps.Keys(stale))
	if len(handles) == 0 {
		return nil, nil
	}
	return handles, t.releaseHandles(ctx, handles)
}

// delegatedIPAM runs another IPAM plugin (ipam.type) with the same
// configuration and environment, as the reference plugins do.
type delegatedIPAM struct {
	typ   string
	stdin []byte
}

func (d delegatedIPAM) assign(ctx context.Context, _ attachment) ([]netip.Addr, *types.DNS, error) {
	r, err := invoke.DelegateAdd(ctx, d.typ, d.stdin, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("IPAM plugin %s: %w", d.typ, err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, nil, fmt.Errorf("IPAM plugin %s: %w", d.typ, err)
	}
	addrs := addrsOf(res.IPs)
	if len(addrs) == 0 {
		return nil, nil, fmt.Errorf("IPAM plugin %s returned no address", d.typ)
	}
	return addrs, &res.DNS, nil
}

func (d delegatedIPAM) release(ctx context.Context, _ attachment) error {
	if err := invoke.DelegateDel(ctx, d.typ, d.stdin, nil); err != nil {
		return fmt.Errorf("IPAM plugin %s: %w", d.typ, err)
	}
	return nil
}

// releaseOther releases another attachment of the network (GC): DEL with
// that attachment's container ID and interface.
func (d delegatedIPAM) releaseOther(ctx context.Context, containerID, ifName string) error {
	path, err := invoke.FindInPath(d.typ, filepath.SplitList(os.Getenv("CNI_PATH")))
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: "DEL", ContainerID: containerID, IfName: ifName, Path: os.Getenv("CNI_PATH")}
	return invoke.ExecPluginWithoutResult(ctx, path, d.stdin, args, nil)
}

func (d delegatedIPAM) check(ctx context.Context, _ attachment, _ []netip.Addr) error {
	if err := invoke.DelegateCheck(ctx, d.typ, d.stdin, nil); err != nil {
		return fmt.Errorf("IPAM plugin %s: %w", d.typ, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, creating it (and its
// directory) if needed, and returns the file: closing it releases the
// lock. It gives up when ctx ends.
func lockFile(ctx context.Context, path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("IPAM lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("IPAM lock: %w", err)
	}
	fd := int(f.Fd())
	done := make(chan error, 1)
	go func() { done <- unix.Flock(fd, unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("IPAM lock %s: %w", path, err)
		}
		return f, nil
	case <-ctx.Done():
		go func() { <-done; f.Close() }()
		return nil, fmt.Errorf("waiting for the IPAM lock %s: %w", path, ctx.Err())
	}
}
