package policy

// policyIndex finds the policies that may select an endpoint without
// evaluating all of them: a policy whose selector requires a label (see
// requirement) is filed under that label's values, the others are tried
// for every endpoint. The engine keeps one index for global policies and
// one per namespace for namespaced ones.
type policyIndex struct {
	any map[*policy]struct{}
	req map[string]map[string]map[*policy]struct{} // key → value → policies
}

// policyRequirement picks the requirement to file a policy under: one on
// a label of the endpoint's own (not an implicit one), with the fewest
// values.
func policyRequirement(p *policy) *requirement {
	if p.invalid {
		return nil
	}
	var best *requirement
	for _, r := range requirements(p.sel.String()) {
		if best == nil || (implicitKey(best.key) && !implicitKey(r.key)) ||
			(implicitKey(best.key) == implicitKey(r.key) && len(r.values) < len(best.values)) {
			r := r
			best = &r
		}
	}
	return best
}

func (x *policyIndex) add(p *policy) {
	if p.req == nil {
		if x.any == nil {
			x.any = map[*policy]struct{}{}
		}
		x.any[p] = struct{}{}
		return
	}
	if x.req == nil {
		x.req = map[string]map[string]map[*policy]struct{}{}
	}
	byValue := x.req[p.req.key]
	if byValue == nil {
		byValue = map[string]map[*policy]struct{}{}
		x.req[p.req.key] = byValue
	}
	for _, v := range p.req.values {
		ps := byValue[v]
		if ps == nil {
			ps = map[*policy]struct{}{}
			byValue[v] = ps
		}
		ps[p] = struct{}{}
	}
}

func (x *policyIndex) remove(p *policy) {
	if p.req == nil {
		delete(x.any, p)
		return
	}
	byValue := x.req[p.req.key]
	for _, v := range p.req.values {
		if ps := byValue[v]; ps != nil {
			delete(ps, p)
			if len(ps) == 0 {
				delete(byValue, v)
			}
		}
	}
	if len(byValue) == 0 {
		delete(x.req, p.req.key)
	}
}

func (x *policyIndex) empty() bool { return len(x.any) == 0 && len(x.req) == 0 }

// appendCandidates appends the policies of x that may select the entity
// whose labels view holds.
func (x *policyIndex) appendCandidates(out []*policy, view *entityView) []*policy {
	if x == nil {
		return out
	}
	for p := range x.any {
		out = append(out, p)
	}
	for k, byValue := range x.req {
		if v, ok := view.Get(k); ok {
			for p := range byValue[v] {
				out = append(out, p)
			}
		}
	}
	return out
}

// indexPolicy files p (nil: nothing) in the engine's policy indexes, and
// unindexPolicy removes it.
func (e *Engine) indexPolicy(p *policy) {
	p.req = policyRequirement(p)
	if p.ns == "" {
		e.globalPolicies.add(p)
		return
	}
	x := e.nsPolicies[p.ns]
	if x == nil {
		x = &policyIndex{}
		e.nsPolicies[p.ns] = x
	}
	x.add(p)
}

func (e *Engine) unindexPolicy(p *policy) {
	if p.ns == "" {
		e.globalPolicies.remove(p)
		return
	}
	if x := e.nsPolicies[p.ns]; x != nil {
		x.remove(p)
		if x.empty() {
			delete(e.nsPolicies, p.ns)
		}
	}
}

// policyCandidates returns the policies that may select en; the slice is
// reused by the next call.
func (e *Engine) policyCandidates(en *entity) []*policy {
	e.viewPol.en = en
	e.polCands = e.globalPolicies.appendCandidates(e.polCands[:0], &e.viewPol)
	if en.ns != "" {
		e.polCands = e.nsPolicies[en.ns].appendCandidates(e.polCands, &e.viewPol)
	}
	return e.polCands
}
