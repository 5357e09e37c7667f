package policy

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/internal/selector"
)

// scopeKind says which entities a set's selector is applied to.
type scopeKind uint8

const (
	scopeAll        scopeKind = iota // every entity
	scopeNamespace                   // the entities of one namespace
	scopeNamespaces                  // the entities of the namespaces nsSel matches
	scopeGlobal                      // cluster-scoped entities (namespaceSelector global())
	scopeLocal                       // the node's own endpoints
)

// setDef defines a set: the entities it selects and, for a named-port set,
// the port. Two rules with equal definitions share one set.
type setDef struct {
	id    SetID
	desc  string
	kind  SetKind
	sel   *selector.Selector
	scope scopeKind
	ns    string             // scopeNamespace
	nsSel *selector.Selector // scopeNamespaces
	sa    *saMatch           // nil: any (or no) service account
	port  string             // NamedPortSet: the port name
	proto uint8              // NamedPortSet: the protocol
}

// addSet gives d its ID and description and records it in sets, returning
// the ID. An equal definition already recorded is kept.
func addSet(sets map[SetID]*setDef, d *setDef) SetID {
	var key strings.Builder
	key.WriteString(string(d.kind))
	key.WriteString("|sel=" + d.sel.UniqueID())
	switch d.scope {
	case scopeNamespace:
		key.WriteString("|ns=" + d.ns)
	case scopeNamespaces:
		key.WriteString("|nssel=" + d.nsSel.UniqueID())
	case scopeGlobal:
		key.WriteString("|global")
	case scopeLocal:
		key.WriteString("|local")
	}
	if d.sa != nil {
		key.WriteString("|sa=" + d.sa.key())
	}
	prefix := "s:"
	if d.kind == NamedPortSet {
		prefix = "p:"
		key.WriteString("|port=" + d.port + "/" + strconv.Itoa(int(d.proto)))
	}
	sum := sha256.Sum256([]byte(key.String()))
	d.id = SetID(prefix + base64.RawURLEncoding.EncodeToString(sum[:])[:28])
	if _, ok := sets[d.id]; !ok {
		d.desc = d.describe()
		sets[d.id] = d
	}
	return d.id
}

func (d *setDef) describe() string {
	var b strings.Builder
	if d.kind == NamedPortSet {
		fmt.Fprintf(&b, "named port %s/%s of ", d.port, protoName(d.proto))
	}
	b.WriteString(d.sel.String())
	switch d.scope {
	case scopeNamespace:
		fmt.Fprintf(&b, " in namespace %s", d.ns)
	case scopeNamespaces:
		fmt.Fprintf(&b, " in namespaces %s", d.nsSel.String())
	case scopeGlobal:
		b.WriteString(" (cluster-scoped)")
	case scopeLocal:
		b.WriteString(" on this node")
	}
	if d.sa != nil {
		b.WriteString(" with service account")
		if d.sa.names != nil {
			fmt.Fprintf(&b, " in {%s}", strings.Join(d.sa.names, ", "))
		}
		if d.sa.sel != nil {
			fmt.Fprintf(&b, " matching %s", d.sa.sel.String())
		}
	}
	return b.String()
}

// protoName returns the usual name of a protocol number.
func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoSCTP:
		return "sctp"
	case protoICMP:
		return "icmp"
	case protoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// ipSet is an active set: one that some active policy or profile refers
// to. Its members are reference-counted, because several entities may
// contribute the same address.
type ipSet struct {
	def     *setDef
	refs    int          // active policies and profiles that refer to it
	mark    uint64       // Engine.epoch of the last pass that visited it
	req     *requirement // a label every member has; nil if none is known
	members map[netip.Prefix]int32
	ports   map[NamedPortMember]int32
	cidrs   int // members that are not host routes

	// Bookkeeping for Flush.
	fresh     bool                     // created since the last flush: sent in full
	changed   map[netip.Prefix]bool    // member → present at the last flush
	changedNP map[NamedPortMember]bool // the same for named ports
}

func newIPSet(d *setDef) *ipSet {
	s := &ipSet{def: d, fresh: true}
	if d.kind == NamedPortSet {
		s.ports = map[NamedPortMember]int32{}
	} else {
		s.members = map[netip.Prefix]int32{}
	}
	return s
}

// presize makes the member map of an empty set ready for n members.
func (s *ipSet) presize(n int) {
	switch {
	case n < 64:
	case s.def.kind == NamedPortSet && len(s.ports) == 0:
		s.ports = make(map[NamedPortMember]int32, n)
	case s.def.kind == AddrSet && len(s.members) == 0:
		s.members = make(map[netip.Prefix]int32, n)
	}
}

// snapshot returns the set's current content.
func (s *ipSet) snapshot() *IPSet {
	return &IPSet{
		ID:          s.def.id,
		Kind:        s.def.kind,
		Description: s.def.desc,
		Members:     sortedPrefixes(s.members),
		NamedPorts:  sortedNamedPorts(s.ports),
		HasCIDRs:    s.cidrs > 0,
	}
}
