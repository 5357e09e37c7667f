package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam/block"
	"github.com/tabbynet/tabby/internal/selector"
)

// pool is an IPPool as IPAM uses it.
type pool struct {
	name      string
	cidr      netip.Prefix
	blockBits int
	disabled  bool
	sel       *selector.Selector
	allNodes  bool // sel is all(): node labels are not needed
	uses      []v1.IPPoolAllowedUse
}

func (p *pool) family() int {
	if p.cidr.Addr().Is4() {
		return 4
	}
	return 6
}

func (p *pool) String() string { return fmt.Sprintf("%q (%s)", p.name, p.cidr) }

// env is what allocation needs besides the blocks: the pools and the IPAM
// configuration.
type env struct {
	pools        []*pool // sorted by name
	strict       bool
	maxBlocks    int
	autoAllocate bool
	cooldown     time.Duration
	readAt       time.Time
}

// poolOf converts a stored pool, filling the defaults api/v1 fills.
func poolOf(p *v1.IPPool) (*pool, error) {
	cidr, err := netip.ParsePrefix(p.Spec.CIDR)
	if err != nil {
		return nil, fmt.Errorf("IPPool %q: spec.cidr: %w", p.Metadata.Name, err)
	}
	cidr = cidr.Masked()
	bits := p.Spec.BlockSize
	if bits == 0 {
		bits = v1.DefaultBlockSize(cidr.Addr().Is6())
	}
	if err := block.CheckSize(cidr, bits); err != nil {
		return nil, fmt.Errorf("IPPool %q: %w", p.Metadata.Name, err)
	}
	sel, err := selector.Parse(p.Spec.NodeSelector)
	if err != nil {
		return nil, fmt.Errorf("IPPool %q: spec.nodeSelector: %w", p.Metadata.Name, err)
	}
	uses := p.Spec.AllowedUses
	if len(uses) == 0 {
		uses = []v1.IPPoolAllowedUse{v1.IPPoolAllowedUseWorkload}
	}
	return &pool{
		name:      p.Metadata.Name,
		cidr:      cidr,
		blockBits: bits,
		disabled:  p.Spec.Disabled,
		sel:       sel,
		allNodes:  sel.String() == selector.MustParse("all()").String(),
		uses:      uses,
	}, nil
}

// readPools lists the IP pools.
func readPools(ctx context.Context, s datastore.Store) ([]*pool, error) {
	kvs, _, err := s.List(ctx, datastore.Prefix{Kind: "IPPool"})
	if err != nil {
		return nil, fmt.Errorf("listing IP pools: %w", err)
	}
	return poolsOf(kvs)
}

func poolsOf(kvs []datastore.KV) ([]*pool, error) {
	var pools []*pool
	for _, kv := range kvs {
		obj, err := datastore.Decode(kv)
		if err != nil {
			return nil, err
		}
		p, ok := obj.(*v1.IPPool)
		if !ok {
			return nil, fmt.Errorf("%s: not an IPPool", kv.Key)
		}
		pp, err := poolOf(p)
		if err != nil {
			return nil, err
		}
		pools = append(pools, pp)
	}
	slices.SortFunc(pools, func(a, b *pool) int { return strings.Compare(a.name, b.name) })
	return pools, nil
}

// poolContaining returns the pool whose CIDR contains addr, or nil.
func poolContaining(pools []*pool, addr netip.Addr) *pool {
	for _, p := range pools {
		if p.cidr.Contains(addr) {
			return p
		}
	}
	return nil
}

// poolOfBlock returns the pool that contains block cidr, or nil.
func poolOfBlock(pools []*pool, cidr netip.Prefix) *pool {
	for _, p := range pools {
		if p.cidr.Bits() <= cidr.Bits() && p.cidr.Contains(cidr.Addr()) {
			return p
		}
	}
	return nil
}

// readEnv reads the pools and the "default" IPAMConfiguration.
func readEnv(ctx context.Context, s datastore.Store, now time.Time) (*env, error) {
	pools, err := readPools(ctx, s)
	if err != nil {
		return nil, err
	}
	e := &env{pools: pools, autoAllocate: true, readAt: now}
	kv, err := s.Get(ctx, datastore.Key{Kind: "IPAMConfiguration", Name: "default"})
	switch {
	case errors.Is(err, datastore.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading the IPAM configuration: %w", err)
	default:
		obj, err := datastore.Decode(kv)
		if err != nil {
			return nil, err
		}
		c, ok := obj.(*v1.IPAMConfiguration)
		if !ok {
			return nil, fmt.Errorf("%s: not an IPAMConfiguration", kv.Key)
		}
		e.strict = c.Spec.StrictAffinity
		e.maxBlocks = c.Spec.MaxBlocksPerHost
		if c.Spec.AutoAllocateBlocks != nil {
			e.autoAllocate = *c.Spec.AutoAllocateBlocks
		}
		e.cooldown = time.Duration(c.Spec.ReleaseCooldownSeconds) * time.Second
	}
	return e, nil
}

// env returns the cached environment, reading it again when it is older
// than Config.EnvTTL.
func (a *Allocator) env(ctx context.Context) (*env, error) {
	now := a.cfg.Now()
	a.mu.Lock()
	e := a.cachedEnv
	a.mu.Unlock()
	if e != nil && a.cfg.EnvTTL > 0 && now.Sub(e.readAt) < a.cfg.EnvTTL && !now.Before(e.readAt) {
		return e, nil
	}
	e, err := readEnv(ctx, a.store, now)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.cachedEnv = e
	a.mu.Unlock()
	return e, nil
}

// nodeLabels returns the labels of node, cached like the environment. A
// node without a Node object has no labels.
func (a *Allocator) nodeLabels(ctx context.Context, node string) (map[string]string, error) {
	now := a.cfg.Now()
	a.mu.Lock()
	c, ok := a.labels[node]
	a.mu.Unlock()
	if ok && a.cfg.EnvTTL > 0 && now.Sub(c.readAt) < a.cfg.EnvTTL && !now.Before(c.readAt) {
		return c.labels, nil
	}
	var labels map[string]string
	kv, err := a.store.Get(ctx, datastore.Key{Kind: "Node", Name: node})
	switch {
	case errors.Is(err, datastore.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading node %q: %w", node, err)
	default:
		obj, err := datastore.Decode(kv)
		if err != nil {
			return nil, err
		}
		labels = obj.GetObjectMeta().Labels
	}
	a.mu.Lock()
	a.labels[node] = cachedLabels{labels: labels, readAt: now}
	a.mu.Unlock()
	return labels, nil
}

type cachedLabels struct {
	labels map[string]string
	readAt time.Time
}

// eligiblePools returns the pools of family that node may allocate from
// for use, restricted to names when names is not empty. It fails if a
// named pool does not exist, is disabled, or does not allow use.
func (a *Allocator) eligiblePools(ctx context.Context, e *env, node string, family int, use v1.IPPoolAllowedUse, names []string) ([]*pool, error) {
	var out []*pool
	var labels map[string]string
	labelsRead := false
	for _, p := range e.pools {
		if p.family() != family {
			continue
		}
		named := slices.Contains(names, p.name)
		if len(names) > 0 && !named {
			continue
		}
		switch {
		case p.disabled:
			if named {
				return nil, fmt.Errorf("IPv%d pool %s is disabled", family, p)
			}
			continue
		case !slices.Contains(p.uses, use):
			if named {
				return nil, fmt.Errorf("IPv%d pool %s does not allow use %s", family, p, use)
			}
			continue
		}
		if !p.allNodes {
			if !labelsRead {
				var err error
				if labels, err = a.nodeLabels(ctx, node); err != nil {
					return nil, err
				}
				labelsRead = true
			}
			if !p.sel.Evaluate(selector.Map(labels)) {
				if named {
					return nil, fmt.Errorf("IPv%d pool %s does not select node %q (nodeSelector %s)", family, p, node, p.sel)
				}
				continue
			}
		}
		out = append(out, p)
	}
	for _, n := range names {
		if !slices.ContainsFunc(e.pools, func(p *pool) bool { return p.name == n && p.family() == family }) {
			return nil, fmt.Errorf("no IPv%d pool named %q", family, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no enabled IPv%d pool with use %s selects node %q", ErrNoPool, family, use, node)
	}
	return out, nil
}
