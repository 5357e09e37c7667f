package policy

import (
	"math"
	"net/netip"
)

// This file keeps the members of the active sets up to date as entities
// (endpoints, network sets) and namespaces change. Membership is not
// stored per entity: whether an entity is in a set is recomputed from the
// set's definition, for the old and the new version of what changed, and
// only the sets that can be affected are looked at:
//   - after a label change, the sets whose selector reads a changed key
//     (byKey);
//   - after any other change, the sets whose requirement (a label every
//     member has, see requirement.go) the entity meets (reqSets), and the
//     sets without one in its scope (nsSets, wideSets).
//
// A new set is filled from the entities that meet its requirement, found
// in the per-namespace postings (own label → entities), or else from every
// entity in its scope.

// bucket returns the namespace bucket ns, creating it.
func (e *Engine) bucket(ns string) *namespace {
	b := e.namespaces[ns]
	if b == nil {
		b = &namespace{name: ns, entities: map[entityKey]*entity{}}
		e.namespaces[ns] = b
	}
	return b
}

// dropBucketIfUnused forgets a bucket with no entities and no resource.
func (e *Engine) dropBucketIfUnused(b *namespace) {
	if !b.exists && len(b.entities) == 0 {
		delete(e.namespaces, b.name)
	}
}

// nsViewFor fills v with the labels namespace selectors see for ns.
func (e *Engine) nsViewFor(v *nsView, ns string) *nsView {
	v.name, v.labels = ns, nil
	if b := e.namespaces[ns]; b != nil {
		v.labels = b.labels
	}
	return v
}

// member reports whether en, whose labels view evaluates and whose
// namespace labels nsv holds, belongs to the set d.
func (e *Engine) member(d *setDef, en *entity, view *entityView, nsv *nsView) bool {
	switch d.scope {
	case scopeNamespace:
		if en.ns != d.ns {
			return false
		}
	case scopeGlobal:
		if en.ns != "" {
			return false
		}
	case scopeNamespaces:
		if en.ns == "" || !d.nsSel.Evaluate(nsv) {
			return false
		}
	case scopeLocal:
		if en.local == nil {
			return false
		}
	}
	if d.sa != nil && (en.kind != kindWorkload || !d.sa.matches(en.sa)) {
		return false
	}
	if d.kind == NamedPortSet && len(en.ports) == 0 {
		return false
	}
	view.en = en
	return d.sel.Evaluate(view)
}

// contribute adds (or removes) what a member entity puts in s: its
// addresses, or for a named-port set the (address, protocol, port) of its
// ports with the set's name and protocol.
func (e *Engine) contribute(s *ipSet, en *entity, add bool) {
	if s.def.kind == AddrSet {
		for _, p := range en.addrs {
			if add {
				e.setAdd(s, p)
			} else {
				e.setRemove(s, p)
			}
		}
		return
	}
	for _, port := range en.ports {
		if port.name != s.def.port || port.proto != s.def.proto {
			continue
		}
		for _, a := range en.addrs {
			m := NamedPortMember{Addr: a.Addr(), Protocol: port.proto, Port: port.port}
			if add {
				e.namedPortAdd(s, m)
			} else {
				e.namedPortRemove(s, m)
			}
		}
	}
}

func (e *Engine) setAdd(s *ipSet, p netip.Prefix) {
	n := s.members[p]
	if n == 0 {
		e.noteMember(s, p, false)
		if !isHostRoute(p) {
			s.cidrs++
		}
	}
	s.members[p] = n + 1
}

func (e *Engine) setRemove(s *ipSet, p netip.Prefix) {
	switch n := s.members[p]; {
	case n <= 0:
	case n == 1:
		delete(s.members, p)
		e.noteMember(s, p, true)
		if !isHostRoute(p) {
			s.cidrs--
		}
	default:
		s.members[p] = n - 1
	}
}

// noteMember records that member p of s changed; was is whether it was
// present before, which (on the first change since the last flush) is
// whether the last flush reported it.
func (e *Engine) noteMember(s *ipSet, p netip.Prefix, was bool) {
	if s.fresh {
		return
	}
	if s.changed == nil {
		s.changed = map[netip.Prefix]bool{}
	}
	if _, ok := s.changed[p]; !ok {
		s.changed[p] = was
	}
	e.dirtySets[s] = struct{}{}
}

func (e *Engine) namedPortAdd(s *ipSet, m NamedPortMember) {
	n := s.ports[m]
	if n == 0 {
		e.noteNamedPort(s, m, false)
	}
	s.ports[m] = n + 1
}

func (e *Engine) namedPortRemove(s *ipSet, m NamedPortMember) {
	switch n := s.ports[m]; {
	case n <= 0:
	case n == 1:
		delete(s.ports, m)
		e.noteNamedPort(s, m, true)
	default:
		s.ports[m] = n - 1
	}
}

func (e *Engine) noteNamedPort(s *ipSet, m NamedPortMember, was bool) {
	if s.fresh {
		return
	}
	if s.changedNP == nil {
		s.changedNP = map[NamedPortMember]bool{}
	}
	if _, ok := s.changedNP[m]; !ok {
		s.changedNP[m] = was
	}
	e.dirtySets[s] = struct{}{}
}

// acquireSets takes a reference on each set, creating (and filling) the
// sets that were not active.
func (e *Engine) acquireSets(defs []*setDef) {
	for _, d := range defs {
		s := e.sets[d.id]
		if s == nil {
			s = newIPSet(d)
			e.sets[d.id] = s
			e.indexSet(s)
			e.populate(s)
			e.dirtySets[s] = struct{}{}
		}
		s.refs++
	}
}

// releaseSets drops a reference on each set; unreferenced sets are
// forgotten (and reported removed at the next flush).
func (e *Engine) releaseSets(defs []*setDef) {
	for _, d := range defs {
		s := e.sets[d.id]
		if s == nil {
			continue
		}
		if s.refs--; s.refs > 0 {
			continue
		}
		e.unindexSet(s)
		delete(e.sets, d.id)
		delete(e.dirtySets, s)
		if _, ok := e.out.sets[d.id]; ok {
			e.droppedSets[d.id] = struct{}{}
		}
	}
}

// populate fills a new set from every entity that can be in it: in each
// namespace of its scope, those with its required label (from the
// postings), or else all of them.
func (e *Engine) populate(s *ipSet) {
	d := s.def
	r := s.req
	usePostings := r != nil && !implicitKey(r.key) && e.profileKeys[r.key] == 0
	var nsv nsView
	s.presize(e.estimate(s, usePostings))
	visit := func(b *namespace) {
		nsv = nsView{name: b.name, labels: b.labels}
		if d.scope == scopeNamespaces && (b.name == "" || !d.nsSel.Evaluate(&nsv)) {
			return
		}
		if usePostings {
			for _, v := range r.values {
				for en := range b.postings[r.key][v] {
					if e.member(d, en, &e.viewNew, &nsv) {
						e.contribute(s, en, true)
					}
				}
			}
			return
		}
		for _, en := range b.entities {
			if e.member(d, en, &e.viewNew, &nsv) {
				e.contribute(s, en, true)
			}
		}
	}
	switch d.scope {
	case scopeNamespace:
		if b := e.namespaces[d.ns]; b != nil {
			visit(b)
		}
	case scopeGlobal:
		if b := e.namespaces[""]; b != nil {
			visit(b)
		}
	case scopeLocal:
		for _, ep := range e.local {
			if e.member(d, ep.en, &e.viewNew, e.nsViewFor(&nsv, ep.en.ns)) {
				e.contribute(s, ep.en, true)
			}
		}
	default:
		for _, b := range e.namespaces {
			visit(b)
		}
	}
}

// estimate returns how many entities populate will look at for s (at
// most), so that its member map can be made big enough at once.
func (e *Engine) estimate(s *ipSet, usePostings bool) int {
	n := 0
	for _, b := range e.namespaces {
		if s.def.scope == scopeLocal {
			return len(e.local)
		}
		if s.def.scope == scopeNamespace && b.name != s.def.ns || s.def.scope == scopeGlobal && b.name != "" {
			continue
		}
		if !usePostings {
			n += len(b.entities)
			continue
		}
		for _, v := range s.req.values {
			n += len(b.postings[s.req.key][v])
		}
	}
	return n
}

// chooseRequirement picks the requirement of a set's selector that the
// fewest entities meet (by the postings), preferring labels that entities
// carry themselves over implicit ones.
func (e *Engine) chooseRequirement(d *setDef) *requirement {
	var best *requirement
	bestN := -1
	for _, r := range requirements(d.sel.String()) {
		n := 0
		if implicitKey(r.key) {
			n = math.MaxInt
		} else {
			for _, b := range e.namespaces {
				for _, v := range r.values {
					n += len(b.postings[r.key][v])
				}
			}
		}
		if bestN < 0 || n < bestN {
			r := r
			best, bestN = &r, n
		}
	}
	return best
}

// candidates returns the active sets that en could be in: those without a
// requirement in its scope, and those whose requirement en meets (its
// labels as view sees them, profiles and implicit labels included). The
// slice is reused by the next call.
func (e *Engine) candidates(en *entity, view *entityView) []*ipSet {
	e.cands = e.cands[:0]
	for s := range e.nsSets[en.ns] {
		e.cands = append(e.cands, s)
	}
	for s := range e.wideSets {
		e.cands = append(e.cands, s)
	}
	view.en = en
	for k := range e.reqKeys {
		if v, ok := view.Get(k); ok {
			for s := range e.reqSets[k][v] {
				e.cands = append(e.cands, s)
			}
		}
	}
	return e.cands
}

// index and unindex keep the postings of an entity's own labels, in its
// namespace bucket.
func (b *namespace) index(en *entity) {
	if b.postings == nil {
		b.postings = map[string]map[string]map[*entity]struct{}{}
	}
	for _, l := range en.labels {
		k, v := l.key.Value(), l.value.Value()
		byValue := b.postings[k]
		if byValue == nil {
			byValue = map[string]map[*entity]struct{}{}
			b.postings[k] = byValue
		}
		ents := byValue[v]
		if ents == nil {
			ents = map[*entity]struct{}{}
			byValue[v] = ents
		}
		ents[en] = struct{}{}
	}
}

func (b *namespace) unindex(en *entity) {
	for _, l := range en.labels {
		k, v := l.key.Value(), l.value.Value()
		byValue := b.postings[k]
		if ents := byValue[v]; ents != nil {
			delete(ents, en)
			if len(ents) == 0 {
				delete(byValue, v)
				if len(byValue) == 0 {
					delete(b.postings, k)
				}
			}
		}
	}
}

func (e *Engine) indexSet(s *ipSet) {
	d := s.def
	s.req = e.chooseRequirement(d)
	for _, k := range d.sel.LabelKeys() {
		ki := e.byKey[k]
		if ki == nil {
			ki = &keyIndex{byNS: map[string]map[*ipSet]struct{}{}, wide: map[*ipSet]struct{}{}}
			e.byKey[k] = ki
		}
		if d.scope == scopeNamespace {
			addToIndex(ki.byNS, d.ns, s)
		} else {
			ki.wide[s] = struct{}{}
		}
	}
	if d.scope == scopeNamespaces {
		for _, k := range d.nsSel.LabelKeys() {
			addToIndex(e.byNSKey, k, s)
		}
	}
	switch {
	case s.req != nil:
		byValue := e.reqSets[s.req.key]
		if byValue == nil {
			byValue = map[string]map[*ipSet]struct{}{}
			e.reqSets[s.req.key] = byValue
		}
		for _, v := range s.req.values {
			addToIndex(byValue, v, s)
		}
		e.reqKeys[s.req.key]++
	case d.scope == scopeNamespace:
		addToIndex(e.nsSets, d.ns, s)
	default:
		e.wideSets[s] = struct{}{}
	}
}

func (e *Engine) unindexSet(s *ipSet) {
	d := s.def
	for _, k := range d.sel.LabelKeys() {
		ki := e.byKey[k]
		if ki == nil {
			continue
		}
		if d.scope == scopeNamespace {
			removeFromIndex(ki.byNS, d.ns, s)
		} else {
			delete(ki.wide, s)
		}
		if len(ki.byNS) == 0 && len(ki.wide) == 0 {
			delete(e.byKey, k)
		}
	}
	if d.scope == scopeNamespaces {
		for _, k := range d.nsSel.LabelKeys() {
			removeFromIndex(e.byNSKey, k, s)
		}
	}
	switch {
	case s.req != nil:
		byValue := e.reqSets[s.req.key]
		for _, v := range s.req.values {
			removeFromIndex(byValue, v, s)
		}
		if e.reqKeys[s.req.key]--; e.reqKeys[s.req.key] == 0 {
			delete(e.reqKeys, s.req.key)
			delete(e.reqSets, s.req.key)
		}
	case d.scope == scopeNamespace:
		removeFromIndex(e.nsSets, d.ns, s)
	default:
		delete(e.wideSets, s)
	}
}

func addToIndex(idx map[string]map[*ipSet]struct{}, k string, s *ipSet) {
	m := idx[k]
	if m == nil {
		m = map[*ipSet]struct{}{}
		idx[k] = m
	}
	m[s] = struct{}{}
}

func removeFromIndex(idx map[string]map[*ipSet]struct{}, k string, s *ipSet) {
	if m := idx[k]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(idx, k)
		}
	}
}

// visit reports whether s was not yet visited in the current pass (epoch)
// and marks it.
func (e *Engine) visit(s *ipSet) bool {
	if s.mark == e.epoch {
		return false
	}
	s.mark = e.epoch
	return true
}

// upsertEntity adds or replaces an entity and updates the sets it was or
// is in, and the node's endpoints if it is (or was) one of them.
func (e *Engine) upsertEntity(en *entity) {
	b := e.bucket(en.ns)
	k := en.key()
	old := b.entities[k]
	nsv := e.nsViewFor(&e.nsNew, en.ns)
	e.epoch++
	switch {
	case old == nil:
		for _, s := range e.candidates(en, &e.viewNew) {
			if e.member(s.def, en, &e.viewNew, nsv) {
				e.contribute(s, en, true)
			}
		}
	case sameButLabels(old, en):
		// Only sets whose selectors read a changed label can change.
		for _, key := range changedLabelKeys(old, en) {
			ki := e.byKey[key]
			if ki == nil {
				continue
			}
			if en.ns != "" {
				for s := range ki.byNS[en.ns] {
					e.reconsider(s, old, en, nsv)
				}
			}
			for s := range ki.wide {
				e.reconsider(s, old, en, nsv)
			}
		}
	default:
		for _, s := range e.candidates(old, &e.viewOld) {
			if e.visit(s) {
				e.replaceIn(s, old, en, nsv)
			}
		}
		for _, s := range e.candidates(en, &e.viewNew) {
			if e.visit(s) {
				e.replaceIn(s, old, en, nsv)
			}
		}
	}
	if old != nil {
		b.unindex(old)
	}
	b.index(en)
	b.entities[k] = en
	e.updateLocal(old, en)
}

// reconsider moves an entity in or out of s after a label change.
func (e *Engine) reconsider(s *ipSet, old, en *entity, nsv *nsView) {
	if !e.visit(s) {
		return
	}
	was := e.member(s.def, old, &e.viewOld, nsv)
	now := e.member(s.def, en, &e.viewNew, nsv)
	switch {
	case was && !now:
		e.contribute(s, old, false)
	case now && !was:
		e.contribute(s, en, true)
	}
}

// replaceIn replaces the contribution of old by that of en in s.
func (e *Engine) replaceIn(s *ipSet, old, en *entity, nsv *nsView) {
	if e.member(s.def, old, &e.viewOld, nsv) {
		e.contribute(s, old, false)
	}
	if e.member(s.def, en, &e.viewNew, nsv) {
		e.contribute(s, en, true)
	}
}

// deleteEntity removes an entity from the sets and the node's endpoints.
func (e *Engine) deleteEntity(ns string, k entityKey) {
	b := e.namespaces[ns]
	if b == nil {
		return
	}
	old := b.entities[k]
	if old == nil {
		return
	}
	nsv := e.nsViewFor(&e.nsNew, ns)
	for _, s := range e.candidates(old, &e.viewOld) {
		if e.member(s.def, old, &e.viewOld, nsv) {
			e.contribute(s, old, false)
		}
	}
	b.unindex(old)
	delete(b.entities, k)
	e.dropBucketIfUnused(b)
	e.updateLocal(old, nil)
}

// setNamespace records a namespace's labels (exists false: the Namespace
// was deleted) and updates the sets with namespace selectors and the
// node's endpoints in it.
func (e *Engine) setNamespace(name string, exists bool, labels map[string]string) {
	b := e.bucket(name)
	oldLabels := b.labels
	b.exists, b.labels = exists, labels
	keys := changedMapKeys(oldLabels, labels)
	if len(keys) > 0 {
		before := &nsView{name: name, labels: oldLabels}
		after := &nsView{name: name, labels: labels}
		e.epoch++
		for _, k := range keys {
			for s := range e.byNSKey[k] {
				if !e.visit(s) {
					continue
				}
				was, now := s.def.nsSel.Evaluate(before), s.def.nsSel.Evaluate(after)
				if was == now {
					continue
				}
				for _, en := range b.entities {
					if was && e.member(s.def, en, &e.viewOld, before) {
						e.contribute(s, en, false)
					}
					if now && e.member(s.def, en, &e.viewNew, after) {
						e.contribute(s, en, true)
					}
				}
			}
		}
		// Global policies may select endpoints by namespace labels.
		for _, ep := range e.local {
			if ep.en.ns == name {
				e.reselect(ep)
			}
		}
	}
	e.dropBucketIfUnused(b)
}

// profileLabelsChanged updates the sets and the node's endpoints after the
// labelsToApply of a profile changed from oldLabels (keys: those that
// differ) to what e.profiles holds now.
func (e *Engine) profileLabelsChanged(name string, oldLabels map[string]string, keys []string) {
	for _, b := range e.namespaces {
		nsv := &nsView{name: b.name, labels: b.labels}
		for _, en := range b.entities {
			if !containsString(en.profiles, name) {
				continue
			}
			e.viewOld.prof, e.viewOld.profLabels = name, oldLabels
			e.epoch++
			for _, key := range keys {
				ki := e.byKey[key]
				if ki == nil {
					continue
				}
				if en.ns != "" {
					for s := range ki.byNS[en.ns] {
						e.reconsider(s, en, en, nsv)
					}
				}
				for s := range ki.wide {
					e.reconsider(s, en, en, nsv)
				}
			}
			e.viewOld.prof, e.viewOld.profLabels = "", nil
			if en.local != nil {
				if ep := e.local[en.endpointID()]; ep != nil {
					e.reselect(ep)
				}
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
