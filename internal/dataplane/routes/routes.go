// Package routes keeps the kernel's main routing table of one network
// namespace in step with the routes Tabby wants: workload routes out of
// veths, blackholes for the node's address blocks, and routes learned over
// BGP (one gateway or several, ECMP), for IPv4 and IPv6.
//
// Tabby owns one route protocol number (Config.Protocol, 80 by default) and
// only ever adds, replaces or deletes routes of that protocol. [Manager.Set]
// records the desired routes; [Manager.Apply] lists the kernel's routes,
// computes the difference and makes the smallest change: it adds what is
// missing, replaces what differs and deletes every route of our protocol
// that is not desired (strays, for example left by a previous run). Apply
// is the full resync: it always compares against the kernel, never against
// a memory of what it did before, so calling it periodically repairs drift.
// With nothing to change it makes no netlink writes.
//
// Safety rules, checked against the kernel on every Apply:
//
//   - A route that overlaps a connected subnet (a subnet of an address on a
//     local interface, e.g. the fabric) or that contains a local address is
//     refused. Installing it would replace or shadow the connected route
//     (see DESIGN.md). This also refuses default routes: the host's default
//     route is not Tabby's to manage.
//   - A route with the same destination and metric as a route of another
//     protocol is refused: the kernel would replace that route.
//   - A route whose interface does not exist or is down is pending: it is
//     not an error, and the next Apply installs it once the link is up.
//
// Refused and pending routes are reported in the [Result]; if a route of
// ours with the same destination and metric is in the kernel, it is
// deleted.
package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
)

// DefaultProtocol is the route protocol number Tabby uses unless configured
// otherwise. It is unassigned in /etc/iproute2/rt_protos.
const DefaultProtocol = 80

// reservedProtocols are route protocol numbers that the kernel or
// well-known routing daemons use (linux/rtnetlink.h and
// /etc/iproute2/rt_protos); Tabby refuses to own them.
var reservedProtocols = map[int]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
	8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
	14: "xorp", 15: "ntk", 16: "dhcp", 17: "mrouted", 18: "keepalived",
	42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
	189: "rip", 192: "eigrp",
}

// Config configures a Manager.
type Config struct {
	// Protocol is the route protocol number (rtm_protocol) Tabby owns in
	// the main table: 5..255, except numbers reserved for the kernel or
	// used by routing daemons (bird 12, zebra/FRR 11 and 186-192, ...).
	Protocol int
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if c.Protocol == 0 {
		c.Protocol = DefaultProtocol
	}
}

// Validate reports what is wrong with the config.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Protocol < 5 || c.Protocol > 255:
		errs = append(errs, fmt.Errorf("routes: protocol %d out of range 5..255", c.Protocol))
	case reservedProtocols[c.Protocol] != "":
		errs = append(errs, fmt.Errorf("routes: protocol %d is reserved for %s", c.Protocol, reservedProtocols[c.Protocol]))
	}
	return errors.Join(errs...)
}

// Type is the type of a route.
type Type uint8

// Route types.
const (
	Unicast   Type = iota // forward the packet
	Blackhole             // drop it silently (for the node's own address blocks)
)

func (t Type) String() string {
	switch t {
	case Unicast:
		return "unicast"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Route is a desired route in the main table.
//
// A unicast route either goes straight out of an interface (Dev set, no
// Nexthops: a link-scope route, as for a workload's /32 or /128), or goes
// through next hops (Nexthops set, Dev empty): one next hop is a plain
// route via a gateway, several make an ECMP route. A blackhole route has
// neither.
type Route struct {
	Dst      netip.Prefix
	Type     Type
	Dev      string
	Nexthops []Nexthop
	Src      netip.Addr // preferred source address; optional
	Metric   int        // 0 means the kernel's default: 0 for IPv4, 1024 for IPv6
}

// Nexthop is one path of a route.
type Nexthop struct {
	Gateway netip.Addr // required for IPv6 ECMP; optional for IPv4 with Dev
	Dev     string     // optional; required for a link-local gateway
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Type == Blackhole {
		s = "blackhole " + s
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	for _, nh := range r.Nexthops {
		if len(r.Nexthops) > 1 {
			s += " nexthop"
		}
		if nh.Gateway.IsValid() {
			s += " via " + nh.Gateway.String()
		}
		if nh.Dev != "" {
			s += " dev " + nh.Dev
		}
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

// clone returns a deep copy of r.
func (r Route) clone() Route {
	r.Nexthops = slices.Clone(r.Nexthops)
	return r
}

// Skipped is a desired route that Apply did not install, and why.
type Skipped struct {
	Route  Route
	Reason string
}

// Result says what an Apply did. Added, Updated and Deleted count netlink
// writes that succeeded.
type Result struct {
	Added   int
	Updated int
	Deleted int
	// Refused are desired routes that are invalid or unsafe; they stay
	// refused until the desired state or the kernel changes.
	Refused []Skipped
	// Pending are desired routes whose interface is missing or down;
	// a later Apply installs them.
	Pending []Skipped
}

// Writes returns the number of successful netlink writes.
func (r Result) Writes() int { return r.Added + r.Updated + r.Deleted }

// Kernel is what a Manager needs from the kernel; *nl.Handle has it. A
// Manager calls it from one goroutine at a time (Apply and List are
// serialised). Writes must return errors matching nl.ErrNotFound for
// missing routes and must not retry on their own.
type Kernel interface {
	RouteList(nl.RouteFilter) ([]nl.Route, error)
	RouteAdd(nl.Route) error
	RouteReplace(nl.Route) error
	RouteDel(nl.Route) error
	LinkList() ([]nl.Link, error)
	AddrList(linkIndex int, fam nl.Family) ([]nl.Addr, error)
}

// Manager owns the routes of one protocol in the main table of one
// namespace. Its methods are safe for concurrent use; Applies run one at a
// time.
type Manager struct {
	cfg Config
	k   Kernel
	log *slog.Logger

	applyMu sync.Mutex // serialises Apply

	mu      sync.Mutex // guards desired
	desired []Route
}

// New returns a Manager. cfg gets its defaults and is validated; log may
// be nil to discard logs.
func New(cfg Config, k Kernel, log *slog.Logger) (*Manager, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, k: k, log: log.With("proto", cfg.Protocol)}, nil
}

// Set replaces the desired routes. It does not touch the kernel; Apply
// does. The slice is copied. Set is idempotent and cheap.
func (m *Manager) Set(routes []Route) {
	cp := make([]Route, len(routes))
	for i, r := range routes {
		cp[i] = r.clone()
	}
	m.mu.Lock()
	m.desired = cp
	m.mu.Unlock()
}

// key identifies a route in the main table: the kernel allows one route
// per destination and metric (TOS, which Tabby never sets, aside).
type key struct {
	dst    netip.Prefix
	metric int
}

// kernelMetric is the metric the kernel gives a route asked for with m.
func kernelMetric(dst netip.Prefix, m int) int {
	if m == 0 && dst.Addr().Is6() {
		return 1024 // IP6_RT_PRIO_USER
	}
	return m
}

// view is the part of the kernel state Apply decides on.
type view struct {
	links     map[string]nl.Link
	names     map[int]string
	ours      []nl.Route // routes of our protocol
	foreign   map[key]int
	connected []connected
	local     []netip.Addr
}

type connected struct {
	prefix netip.Prefix
	dev    string
}

func (m *Manager) readKernel() (*view, error) {
	links, err := m.k.LinkList()
	if err != nil {
		return nil, err
	}
	v := &view{links: map[string]nl.Link{}, names: map[int]string{}, foreign: map[key]int{}}
	for _, l := range links {
		v.links[l.Name] = l
		v.names[l.Index] = l.Name
	}
	all, err := m.k.RouteList(nl.RouteFilter{Family: nl.FamilyAll})
	if err != nil {
		return nil, err
	}
	for _, r := range all {
		if r.Protocol == m.cfg.Protocol {
			v.ours = append(v.ours, r)
			continue
		}
		v.foreign[key{r.Dst, r.Priority}] = r.Protocol
		if isConnected(r) {
			v.connected = append(v.connected, connected{r.Dst, v.names[r.LinkIndex]})
		}
	}
	addrs, err := m.k.AddrList(0, nl.FamilyAll)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		if ip.IsLoopback() || (ip.Is6() && ip.IsLinkLocalUnicast()) {
			continue
		}
		v.local = append(v.local, ip)
	}
	return v, nil
}

// isConnected reports whether r is a connected route: the kernel's route
// for the subnet of a local address. IPv6 link-local (fe80::/64 on every
// interface) and multicast routes do not count.
func isConnected(r nl.Route) bool {
	if r.Protocol != nl.ProtoKernel || (r.Type != nl.RouteUnicast && r.Type != 0) {
		return false
	}
	a := r.Dst.Addr()
	if a.Is4() {
		return r.Scope == nl.ScopeLink
	}
	return !a.IsLinkLocalUnicast() && !a.IsMulticast()
}

// Apply makes the kernel's routes of our protocol match the desired ones;
// see the package documentation. It carries on past failed writes and
// returns them joined, with a Result that counts only what succeeded. It
// stops early when ctx is done.
func (m *Manager) Apply(ctx context.Context) (Result, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	desired := m.desired
	m.mu.Unlock()

	var res Result
	if err := ctx.Err(); err != nil {
		return res, err
	}
	v, err := m.readKernel()
	if err != nil {
		return res, fmt.Errorf("routes: reading kernel state: %w", err)
	}

	want := map[key]nl.Route{}
	var order []key
	for _, r := range desired {
		nr, reason, pending := m.plan(r, v, want)
		switch {
		case reason == "":
			k := key{nr.Dst, nr.Priority}
			want[k] = nr
			order = append(order, k)
		case pending:
			res.Pending = append(res.Pending, Skipped{r, reason})
		default:
			res.Refused = append(res.Refused, Skipped{r, reason})
		}
	}

	// A kernel route of ours with a desired key is compared and replaced
	// if it differs (even if it is of a type Tabby never installs); any
	// other route of ours is a stray.
	have := map[key]nl.Route{}
	var stray []nl.Route
	for _, r := range v.ours {
		k := key{r.Dst, r.Priority}
		_, wanted := want[k]
		_, seen := have[k]
		if !wanted || seen {
			stray = append(stray, r)
			continue
		}
		have[k] = r
	}

	var errs []error
	write := func(op string, r nl.Route, fn func(nl.Route) error, n *int) bool {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			return false
		}
		if err := fn(r); err != nil {
			errs = append(errs, err)
			return true
		}
		*n++
		m.log.Debug("route "+op, "prefix", r.Dst, "route", r.String())
		return true
	}
	// Make before break: install and fix first, then delete.
	for _, k := range order {
		w := want[k]
		h, ok := have[k]
		switch {
		case !ok:
			if !write("added", w, m.k.RouteAdd, &res.Added) {
				return res, errors.Join(errs...)
			}
		case !sameRoute(w, h):
			if !write("updated", w, m.k.RouteReplace, &res.Updated) {
				return res, errors.Join(errs...)
			}
		}
	}
	for _, r := range stray {
		del := nl.Route{Dst: r.Dst, Priority: r.Priority, Protocol: m.cfg.Protocol, Type: r.Type}
		if !write("deleted", del, m.delete, &res.Deleted) {
			return res, errors.Join(errs...)
		}
	}
	if res.Writes() > 0 {
		m.log.Info("routes applied", "added", res.Added, "updated", res.Updated, "deleted", res.Deleted,
			"refused", len(res.Refused), "pending", len(res.Pending))
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("routes: %w", errors.Join(errs...))
	}
	return res, nil
}

// delete deletes a route, treating one that is already gone (the kernel
// removes routes of a link that goes away) as deleted.
func (m *Manager) delete(r nl.Route) error {
	if err := m.k.RouteDel(r); err != nil && !errors.Is(err, nl.ErrNotFound) {
		return err
	}
	return nil
}

// plan turns a desired route into the kernel route to install. It returns
// a reason instead when the route is refused or (pending true) must wait.
func (m *Manager) plan(r Route, v *view, planned map[key]nl.Route) (nr nl.Route, reason string, pending bool) {
	if err := validate(r); err != nil {
		return nr, "invalid: " + err.Error(), false
	}
	dst := r.Dst.Masked()
	nr = nl.Route{
		Dst:      dst,
		Protocol: m.cfg.Protocol,
		Priority: kernelMetric(dst, r.Metric),
		Src:      r.Src,
		Type:     nl.RouteUnicast,
		Table:    nl.TableMain,
	}
	k := key{dst, nr.Priority}
	if _, dup := planned[k]; dup {
		return nr, "duplicate: another desired route has the same destination and metric", false
	}
	if reason := unsafe(dst, v); reason != "" {
		return nr, reason, false
	}
	if proto, ok := v.foreign[k]; ok {
		return nr, fmt.Sprintf("conflicts with a route of protocol %d with the same destination and metric", proto), false
	}

	// Resolve interfaces: a missing or down one makes the route pending
	// (the kernel refuses routes through a down link).
	linkIndex := func(name string) (int, string) {
		l, ok := v.links[name]
		switch {
		case !ok:
			return 0, fmt.Sprintf("interface %s does not exist", name)
		case !l.Up:
			return 0, fmt.Sprintf("interface %s is down", name)
		}
		return l.Index, ""
	}
	switch {
	case r.Type == Blackhole:
		nr.Type = nl.RouteBlackhole
	case r.Dev != "":
		idx, why := linkIndex(r.Dev)
		if why != "" {
			return nr, why, true
		}
		nr.LinkIndex = idx
		if dst.Addr().Is4() {
			nr.Scope = nl.ScopeLink
		}
	default:
		for _, nh := range r.Nexthops {
			var idx int
			if nh.Dev != "" {
				var why string
				if idx, why = linkIndex(nh.Dev); why != "" {
					return nr, why, true
				}
			}
			nr.Nexthops = append(nr.Nexthops, nl.Nexthop{Gateway: nh.Gateway, LinkIndex: idx, Weight: 1})
		}
		if len(nr.Nexthops) == 1 {
			nr.Gateway, nr.LinkIndex = nr.Nexthops[0].Gateway, nr.Nexthops[0].LinkIndex
			nr.Nexthops = nil
			if !nr.Gateway.IsValid() && dst.Addr().Is4() {
				nr.Scope = nl.ScopeLink
			}
		}
	}
	return nr, "", false
}

// validate checks a desired route's shape.
func validate(r Route) error {
	if !r.Dst.IsValid() {
		return errors.New("no destination")
	}
	is4 := r.Dst.Addr().Is4()
	sameFamily := func(a netip.Addr) bool { return a.Is4() == is4 && !a.Is4In6() }
	if r.Src.IsValid() && !sameFamily(r.Src) {
		return errors.New("source address of another family")
	}
	if r.Metric < 0 {
		return errors.New("negative metric")
	}
	switch r.Type {
	case Blackhole:
		if r.Dev != "" || len(r.Nexthops) > 0 {
			return errors.New("blackhole route with an interface or next hops")
		}
		return nil
	case Unicast:
	default:
		return fmt.Errorf("unknown type %d", r.Type)
	}
	if r.Dev != "" {
		if len(r.Nexthops) > 0 {
			return errors.New("both Dev and Nexthops set")
		}
		return nl.CheckName(r.Dev)
	}
	if len(r.Nexthops) == 0 {
		return errors.New("unicast route without Dev or Nexthops")
	}
	seen := map[Nexthop]bool{}
	for _, nh := range r.Nexthops {
		if seen[nh] {
			return fmt.Errorf("duplicate next hop %v", nh)
		}
		seen[nh] = true
		if nh.Dev != "" {
			if err := nl.CheckName(nh.Dev); err != nil {
				return err
			}
		}
		if !nh.Gateway.IsValid() {
			if nh.Dev == "" {
				return errors.New("next hop without gateway or interface")
			}
			if !is4 && len(r.Nexthops) > 1 {
				return errors.New("IPv6 ECMP next hops need gateways")
			}
			continue
		}
		if !sameFamily(nh.Gateway) {
			return fmt.Errorf("gateway %s of another family", nh.Gateway)
		}
		if nh.Gateway.IsLinkLocalUnicast() && nh.Dev == "" {
			return fmt.Errorf("link-local gateway %s without interface", nh.Gateway)
		}
	}
	return nil
}

// unsafe returns why installing a route for dst would hurt the host's own
// connectivity, or "".
func unsafe(dst netip.Prefix, v *view) string {
	for _, c := range v.connected {
		if !dst.Overlaps(c.prefix) {
			continue
		}
		if dst.Bits() >= c.prefix.Bits() {
			return fmt.Sprintf("unsafe: inside connected subnet %s (dev %s)", c.prefix, c.dev)
		}
		return fmt.Sprintf("unsafe: covers connected subnet %s (dev %s)", c.prefix, c.dev)
	}
	for _, a := range v.local {
		if dst.Contains(a) {
			return fmt.Sprintf("unsafe: covers local address %s", a)
		}
	}
	return ""
}

// sameRoute reports whether the kernel route got is what want asks for.
// Fields the kernel fills in by itself (the link of a gateway, the link of
// an IPv6 blackhole, weights of 1) are compared only when want sets them.
func sameRoute(want, got nl.Route) bool {
	if want.Type != got.Type || want.Dst != got.Dst || want.Priority != got.Priority || want.Src != got.Src {
		return false
	}
	if want.Type == nl.RouteBlackhole {
		return true
	}
	if want.Dst.Addr().Is4() && want.Scope != got.Scope {
		return false
	}
	if len(want.Nexthops) == 0 {
		return len(got.Nexthops) == 0 && sameHop(
			nl.Nexthop{Gateway: want.Gateway, LinkIndex: want.LinkIndex, OnLink: want.OnLink},
			nl.Nexthop{Gateway: got.Gateway, LinkIndex: got.LinkIndex, OnLink: got.OnLink})
	}
	if len(want.Nexthops) != len(got.Nexthops) {
		return false
	}
	used := make([]bool, len(got.Nexthops))
next:
	for _, w := range want.Nexthops {
		for i, g := range got.Nexthops {
			if !used[i] && sameHop(w, g) {
				used[i] = true
				continue next
			}
		}
		return false
	}
	return true
}

func sameHop(want, got nl.Nexthop) bool {
	weight := func(w int) int { return max(w, 1) }
	return want.Gateway == got.Gateway && want.OnLink == got.OnLink &&
		(want.LinkIndex == 0 || want.LinkIndex == got.LinkIndex) &&
		weight(want.Weight) == weight(got.Weight)
}

// List returns the routes of our protocol that are in the kernel now, in
// the form Set takes (metrics as the kernel reports them, so an IPv6 route
// asked for with metric 0 shows 1024). Routes of kinds Tabby does not
// install are left out. List waits for a running Apply to finish.
func (m *Manager) List(ctx context.Context) ([]Route, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	links, err := m.k.LinkList()
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Index] = l.Name
	}
	krs, err := m.k.RouteList(nl.RouteFilter{Protocol: m.cfg.Protocol})
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	var out []Route
	for _, kr := range krs {
		r := Route{Dst: kr.Dst, Src: kr.Src, Metric: kr.Priority}
		switch {
		case kr.Type == nl.RouteBlackhole:
			r.Type = Blackhole
		case kr.Type != nl.RouteUnicast:
			continue
		case len(kr.Nexthops) > 0:
			for _, nh := range kr.Nexthops {
				r.Nexthops = append(r.Nexthops, Nexthop{Gateway: nh.Gateway, Dev: names[nh.LinkIndex]})
			}
		case kr.Gateway.IsValid():
			r.Nexthops = []Nexthop{{Gateway: kr.Gateway, Dev: names[kr.LinkIndex]}}
		default:
			r.Dev = names[kr.LinkIndex]
		}
		out = append(out, r)
	}
	slices.SortFunc(out, compareRoutes)
	return out, nil
}

func compareRoutes(a, b Route) int {
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if c := a.Dst.Bits() - b.Dst.Bits(); c != 0 {
		return c
	}
	return a.Metric - b.Metric
}
