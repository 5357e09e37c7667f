package nft

import (
	"errors"
	"slices"
)

// chainSpec is a desired chain.
type chainSpec struct {
	name  string
	hook  *hookSpec // nil for a regular chain
	rules []*ruleSpec
}

// desired is the whole desired table.
type desired struct {
	chains map[string]*chainSpec
	sets   map[string]*setSpec
}

// kRule is a rule in the kernel: handle 0 means "added by us, handle not
// read back yet".
type kRule struct {
	handle uint64
	id     string
}

// kChain is a chain in the kernel.
type kChain struct {
	hook  *hookSpec
	rules []kRule
	// from is the spec the chain was last written (or found equal) to;
	// while the desired spec is the same pointer, nothing needs checking.
	from *chainSpec
}

// kSet is a named set in the kernel.
type kSet struct {
	shape setShape
	elems map[string]element
	from  *setSpec
}

// kState is what the kernel holds in our table: read by Resync, kept up
// to date by every successful transaction.
type kState struct {
	table  bool
	chains map[string]*kChain
	sets   map[string]*kSet
}

func newKState() *kState {
	return &kState{chains: map[string]*kChain{}, sets: map[string]*kSet{}}
}

// readState reads our table from the kernel.
func (k *kernel) readState() (*kState, error) {
	st := newKState()
	ok, err := k.tableExists()
	if err != nil || !ok {
		return st, err
	}
	st.table = true
	chains, err := k.chains()
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		st.chains[c.name] = &kChain{hook: c.hook}
	}
	rules, err := k.rules("")
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if c := st.chains[r.chain]; c != nil {
			c.rules = append(c.rules, kRule{handle: r.handle, id: r.id})
		}
	}
	sets, err := k.sets()
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		es, err := k.elements(s.name)
		if err != nil {
			return nil, err
		}
		st.sets[s.name] = &kSet{shape: s.shape, elems: elementsFromKernel(s.shape, es)}
	}
	return st, nil
}

// errRebuild says that the kernel holds something of ours that cannot be
// changed in place (a set of another shape, a base chain on another hook):
// the table is rebuilt in one transaction.
var errRebuild = errors.New("table needs rebuilding")

// planner builds one transaction from the difference between the desired
// table and the kernel state, and records how to update the state once the
// transaction has committed.
type planner struct {
	k    *kernel
	b    *batch
	st   *kState
	res  *Result
	post []func()
}

func (p *planner) after(f func()) { p.post = append(p.post, f) }

// plan queues the changes that turn st into d.
func (p *planner) plan(d *desired) error {
	st := p.st
	// Check for what cannot be changed in place before queueing anything.
	for name, spec := range d.sets {
		if ks := st.sets[name]; ks != nil && ks.shape != spec.shape {
			return errRebuild
		}
	}
	for name, spec := range d.chains {
		kc := st.chains[name]
		if kc == nil {
			continue
		}
		if (kc.hook == nil) != (spec.hook == nil) ||
			(kc.hook != nil && (kc.hook.typ != spec.hook.typ || kc.hook.hook != spec.hook.hook || kc.hook.priority != spec.hook.priority)) {
			return errRebuild
		}
	}

	if !st.table {
		p.b.addTable()
		p.after(func() { st.table = true })
	}
	// Only objects whose spec is not the one last written need a look;
	// sorting them keeps transactions deterministic.
	var names []string
	for name, spec := range d.chains {
		if kc := st.chains[name]; kc == nil || kc.from != spec {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var setNames []string
	for name, spec := range d.sets {
		if ks := st.sets[name]; ks == nil || ks.from != spec {
			setNames = append(setNames, name)
		}
	}
	slices.Sort(setNames)
	// 1. New chains (all of them first, so that rules and map elements can
	// refer to them), and base chain policies that drifted.
	for _, name := range names {
		spec := d.chains[name]
		kc := st.chains[name]
		if kc == nil {
			p.b.addChain(name, spec.hook)
			p.res.ChainsAdded++
			p.after(func() { st.chains[name] = &kChain{hook: spec.hook} })
		} else if spec.hook != nil && kc.hook.policy != spec.hook.policy {
			p.b.addChain(name, spec.hook)
			p.res.ChainsUpdated++
			p.after(func() { kc.hook = spec.hook })
		}
	}
	// 2. Sets: new ones with their elements, element changes of the rest.
	for _, name := range setNames {
		p.planSet(d.sets[name])
	}
	// 3. Rules, chain by chain.
	for _, name := range names {
		if err := p.planRules(d.chains[name]); err != nil {
			return err
		}
	}
	// 4. Strays: chains (flushed first, so that strays that jump to each
	// other can go in any order), then sets, which rules may have used.
	var strayChains []string
	for name := range st.chains {
		if d.chains[name] == nil {
			strayChains = append(strayChains, name)
		}
	}
	slices.Sort(strayChains)
	for _, name := range strayChains {
		p.b.flushChain(name)
	}
	for _, name := range strayChains {
		p.b.delChain(name)
		p.res.ChainsDeleted++
		p.after(func() { delete(st.chains, name) })
	}
	var straySets []string
	for name := range st.sets {
		if d.sets[name] == nil {
			straySets = append(straySets, name)
		}
	}
	slices.Sort(straySets)
	for _, name := range straySets {
		p.b.delSet(name)
		p.res.SetsDeleted++
		p.after(func() { delete(st.sets, name) })
	}
	return nil
}

func (p *planner) planSet(spec *setSpec) {
	st := p.st
	ks := st.sets[spec.name]
	if ks == nil {
		p.b.addSet(spec)
		p.res.SetsAdded++
		p.res.ElementsAdded += len(spec.elems)
		p.after(func() { st.sets[spec.name] = &kSet{shape: spec.shape, elems: spec.elems, from: spec} })
		return
	}
	if ks.from == spec {
		return
	}
	var del, add []element
	for id, e := range ks.elems {
		if _, ok := spec.elems[id]; !ok {
			del = append(del, e)
		}
	}
	for id, e := range spec.elems {
		if _, ok := ks.elems[id]; !ok {
			add = append(add, e)
		}
	}
	// Deletes first: a map key whose verdict changes is deleted, then
	// added again.
	p.b.elements(spec, del, false)
	p.b.elements(spec, add, true)
	p.res.ElementsDeleted += len(del)
	p.res.ElementsAdded += len(add)
	p.after(func() { ks.elems, ks.from = spec.elems, spec })
}

// planRules queues the smallest rule changes that turn the kernel chain
// into spec: rules on a longest common subsequence stay untouched (same
// handle); in each gap between them, old rules are replaced by new ones
// pairwise, and the rest deleted or inserted before the next kept rule.
func (p *planner) planRules(spec *chainSpec) error {
	kc := p.st.chains[spec.name]
	if kc == nil {
		// New chain: append everything.
		for _, r := range spec.rules {
			p.b.rule(spec.name, r, 0, 0)
		}
		p.res.RulesAdded += len(spec.rules)
		rules := make([]kRule, len(spec.rules))
		for i, r := range spec.rules {
			rules[i] = kRule{id: r.id}
		}
		p.after(func() {
			if c := p.st.chains[spec.name]; c != nil {
				c.rules, c.from = rules, spec
			}
		})
		return nil
	}
	if kc.from == spec {
		return nil
	}
	oldIDs := make([]string, len(kc.rules))
	for i, r := range kc.rules {
		oldIDs[i] = r.id
	}
	newIDs := make([]string, len(spec.rules))
	for i, r := range spec.rules {
		newIDs[i] = r.id
	}
	if slices.Equal(oldIDs, newIDs) {
		p.after(func() { kc.from = spec })
		return nil
	}
	// Changes need handles; rules we added since the last read have none
	// yet.
	if slices.ContainsFunc(kc.rules, func(r kRule) bool { return r.handle == 0 }) {
		krs, err := p.k.rules(spec.name)
		if err != nil {
			return err
		}
		kc.rules = kc.rules[:0]
		for _, r := range krs {
			kc.rules = append(kc.rules, kRule{handle: r.handle, id: r.id})
		}
		oldIDs = oldIDs[:0]
		for _, r := range kc.rules {
			oldIDs = append(oldIDs, r.id)
		}
	}
	keepOld, keepNew := lcs(oldIDs, newIDs)

	var out []kRule
	i, j := 0, 0
	for i < len(oldIDs) || j < len(newIDs) {
		// A gap: old rules up to the next kept one, new rules likewise.
		gi, gj := i, j
		for i < len(oldIDs) && !keepOld[i] {
			i++
		}
		for j < len(newIDs) && !keepNew[j] {
			j++
		}
		var anchor uint64
		if i < len(oldIDs) {
			anchor = kc.rules[i].handle
		}
		oldGap, newGap := kc.rules[gi:i], spec.rules[gj:j]
		n := min(len(oldGap), len(newGap))
		for x := 0; x < n; x++ {
			p.b.rule(spec.name, newGap[x], 0, oldGap[x].handle)
			out = append(out, kRule{handle: oldGap[x].handle, id: newGap[x].id})
		}
		for _, r := range oldGap[n:] {
			p.b.delRule(spec.name, r.handle)
		}
		for _, r := range newGap[n:] {
			p.b.rule(spec.name, r, anchor, 0)
			out = append(out, kRule{id: r.id})
		}
		p.res.RulesReplaced += n
		p.res.RulesDeleted += len(oldGap) - n
		p.res.RulesAdded += len(newGap) - n
		if i < len(oldIDs) {
			out = append(out, kc.rules[i])
			i++
			j++
		}
	}
	p.after(func() { kc.rules, kc.from = out, spec })
	return nil
}

// maxLCSCells bounds the dynamic programme; beyond it the differing middle
// of two long chains is rewritten whole.
const maxLCSCells = 1 << 20

// lcs marks the elements of a and b that belong to a longest common
// subsequence. A common prefix and suffix are matched first.
func lcs(a, b []string) (keepA, keepB []bool) {
	keepA, keepB = make([]bool, len(a)), make([]bool, len(b))
	lo := 0
	for lo < len(a) && lo < len(b) && a[lo] == b[lo] {
		keepA[lo], keepB[lo] = true, true
		lo++
	}
	ha, hb := len(a), len(b)
	for ha > lo && hb > lo && a[ha-1] == b[hb-1] {
		ha--
		hb--
		keepA[ha], keepB[hb] = true, true
	}
	ma, mb := a[lo:ha], b[lo:hb]
	if len(ma) == 0 || len(mb) == 0 || len(ma)*len(mb) > maxLCSCells {
		return keepA, keepB
	}
	// t[i][j] = LCS length of ma[i:] and mb[j:].
	w := len(mb) + 1
	t := make([]int32, (len(ma)+1)*w)
	for i := len(ma) - 1; i >= 0; i-- {
		for j := len(mb) - 1; j >= 0; j-- {
			if ma[i] == mb[j] {
				t[i*w+j] = t[(i+1)*w+j+1] + 1
			} else {
				t[i*w+j] = max(t[(i+1)*w+j], t[i*w+j+1])
			}
		}
	}
	for i, j := 0, 0; i < len(ma) && j < len(mb); {
		switch {
		case ma[i] == mb[j]:
			keepA[lo+i], keepB[lo+j] = true, true
			i++
			j++
		case t[(i+1)*w+j] >= t[i*w+j+1]:
			i++
		default:
			j++
		}
	}
	return keepA, keepB
}

// drift counts the objects in which now (read from the kernel) differs
// from was (what we believed the kernel held): chains, rules, sets and
// elements missing or extra.
func drift(was, now *kState) int {
	n := 0
	if was.table != now.table {
		n++
	}
	for name, wc := range was.chains {
		nc := now.chains[name]
		if nc == nil {
			n += 1 + len(wc.rules)
			continue
		}
		n += multisetDiff(wc.rules, nc.rules)
		if wc.hook != nil && nc.hook != nil && *wc.hook != *nc.hook {
			n++
		}
	}
	for name, nc := range now.chains {
		if was.chains[name] == nil {
			n += 1 + len(nc.rules)
		}
	}
	for name, ws := range was.sets {
		ns := now.sets[name]
		if ns == nil {
			n += 1 + len(ws.elems)
			continue
		}
		if ws.shape != ns.shape {
			n++
		}
		for id := range ws.elems {
			if _, ok := ns.elems[id]; !ok {
				n++
			}
		}
		for id := range ns.elems {
			if _, ok := ws.elems[id]; !ok {
				n++
			}
		}
	}
	for name, ns := range now.sets {
		if was.sets[name] == nil {
			n += 1 + len(ns.elems)
		}
	}
	return n
}

// multisetDiff counts rules (by identity) in one list and not the other,
// plus one if both hold the same rules in another order.
func multisetDiff(a, b []kRule) int {
	count := map[string]int{}
	for _, r := range a {
		count[r.id]++
	}
	for _, r := range b {
		count[r.id]--
	}
	n := 0
	for _, c := range count {
		n += max(c, -c)
	}
	if n == 0 && !slices.EqualFunc(a, b, func(x, y kRule) bool { return x.id == y.id }) {
		n = 1
	}
	return n
}
