package selector

import (
	"slices"
	"strings"
)

// op is the kind of a node.
type op uint8

const (
	opAll        op = iota // all()
	opGlobal               // global()
	opHas                  // has(key)
	opEq                   // key == value
	opNe                   // key != value
	opIn                   // key in {set}
	opNotIn                // key not in {set}
	opContains             // key contains value
	opStartsWith           // key starts with value
	opEndsWith             // key ends with value
	opNot                  // !kids[0]
	opAnd                  // kids[0] && kids[1] && ...
	opOr                   // kids[0] || kids[1] || ...
)

// node is one node of a parsed selector; it is both the syntax tree and the
// evaluation program. Nodes are built only by the constructors below, which
// keep the tree normalised (flat && and || lists, sorted unique sets), and are
// never modified afterwards.
type node struct {
	op    op
	key   string   // label key of comparisons and has()
	value string   // operand of ==, !=, contains, starts with, ends with
	set   []string // members of in / not in: sorted, de-duplicated
	kids  []*node  // operand of !; two or more operands of && and ||
}

func newLeaf(o op, key, value string) *node {
	return &node{op: o, key: key, value: value}
}

// newSet builds an in / not in node. It copies, sorts and de-duplicates
// members, so evaluation can binary-search them.
func newSet(o op, key string, members []string) *node {
	set := slices.Clone(members)
	slices.Sort(set)
	return &node{op: o, key: key, set: slices.Compact(set)}
}

func newNot(x *node) *node {
	return &node{op: opNot, kids: []*node{x}}
}

// newList builds an && or || node from two or more operands, splicing in the
// operands of any operand that is itself the same operator, since both are
// associative: a && (b && c) is a && b && c.
func newList(o op, operands []*node) *node {
	if len(operands) == 1 {
		return operands[0]
	}
	kids := make([]*node, 0, len(operands))
	for _, x := range operands {
		if x.op == o {
			kids = append(kids, x.kids...)
		} else {
			kids = append(kids, x)
		}
	}
	return &node{op: o, kids: kids}
}

// eval evaluates the node against l. It must not allocate.
func (n *node) eval(l Labels) bool {
	switch n.op {
	case opAll:
		return true
	case opGlobal:
		_, ok := l.Get(NamespaceLabel)
		return !ok
	case opHas:
		_, ok := l.Get(n.key)
		return ok
	case opEq:
		v, ok := l.Get(n.key)
		return ok && v == n.value
	case opNe:
		v, ok := l.Get(n.key)
		return !ok || v != n.value
	case opIn:
		v, ok := l.Get(n.key)
		return ok && inSet(n.set, v)
	case opNotIn:
		v, ok := l.Get(n.key)
		return !ok || !inSet(n.set, v)
	case opContains:
		v, ok := l.Get(n.key)
		return ok && strings.Contains(v, n.value)
	case opStartsWith:
		v, ok := l.Get(n.key)
		return ok && strings.HasPrefix(v, n.value)
	case opEndsWith:
		v, ok := l.Get(n.key)
		return ok && strings.HasSuffix(v, n.value)
	case opNot:
		return !n.kids[0].eval(l)
	case opAnd:
		for _, k := range n.kids {
			if !k.eval(l) {
				return false
			}
		}
		return true
	case opOr:
		for _, k := range n.kids {
			if k.eval(l) {
				return true
			}
		}
		return false
	}
	panic("selector: unknown node op")
}

// inSet reports whether v is in the sorted set. Short sets are scanned; that
// is faster than a binary search for the handful of members usual in policy.
func inSet(set []string, v string) bool {
	if len(set) <= 8 {
		for _, m := range set {
			if m == v {
				return true
			}
		}
		return false
	}
	_, found := slices.BinarySearch(set, v)
	return found
}

// appendKeys appends every label key the node reads, with repeats.
func (n *node) appendKeys(keys []string) []string {
	switch n.op {
	case opAll:
	case opGlobal:
		keys = append(keys, NamespaceLabel)
	case opNot, opAnd, opOr:
		for _, k := range n.kids {
			keys = k.appendKeys(keys)
		}
	default:
		keys = append(keys, n.key)
	}
	return keys
}
