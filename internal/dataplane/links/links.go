// Package links configures the host side of workload veths: the MAC
// address, the link state and the sysctls that make the host a router for
// the workload, plus the namespace-wide forwarding switches.
//
// Tabby owns the interfaces whose names start with Config.InterfacePrefix
// ("tabby" by default); [InterfaceName] derives such a name from an
// endpoint ID. [Manager.Set] records which interfaces should exist and
// which address families they carry; [Manager.Apply] reads the kernel and
// changes only what differs, so a second Apply with the same state makes
// no writes. Apply reads the sysctls and neighbour entries only of
// interfaces it has not configured yet (new ones, ones recreated with a new
// index, ones whose desired state changed); [Manager.Verify] reads
// everything again and repairs drift, and the agent calls it periodically.
// So the cost of an Apply does not grow with the number of workloads on
// the node. Apply never creates or deletes a link: the CNI plugin owns the
// veths' life cycle. An interface that is not there yet is reported as not
// present, and interfaces with our prefix that are not desired are
// reported as strays for the agent to deal with.
//
// For each present interface Apply ensures, in this order (sysctls before
// the link goes up, so it never forwards half-configured):
//
//	IPv4  net.ipv4.conf.IF.forwarding=1     route packets from the workload
//	      net.ipv4.conf.IF.proxy_arp=1      answer ARP for the gateway 169.254.1.1
//	                                        (and anything else routed elsewhere)
//	      net.ipv4.neigh.IF.proxy_delay=0   answer at once, not after up to 0.8 s
//	      net.ipv4.conf.IF.rp_filter=1      strict reverse-path check: drop packets
//	                                        whose source is not routed back out of
//	                                        IF (a workload spoofing another's address)
//	IPv6  net.ipv6.conf.IF.forwarding=1     route packets from the workload
//	      net.ipv6.conf.IF.accept_ra=0      never learn routes from a workload
//	      net.ipv6.conf.IF.proxy_ndp=1      answer NDP for proxy entries, if any
//	      net.ipv6.conf.IF.accept_dad=0     the host side's link-local address (the
//	                                        workload's gateway) is usable at once
//	link  MAC Config.MAC (ee:ee:ee:ee:ee:ee), administratively up
//
// and, in the namespace, net.ipv4.ip_forward=1 when any interface carries
// IPv4 and net.ipv6.conf.all.forwarding=1 when any carries IPv6. See
// docs/dataplane.md for the reasoning.
package links

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
)

// Defaults.
const (
	DefaultInterfacePrefix = "tabby"
	DefaultMAC             = "ee:ee:ee:ee:ee:ee"
	// MaxPrefixLen keeps at least 8 hex digits (32 bits) of hash in an
	// interface name.
	MaxPrefixLen = nl.MaxNameLen - 8
)

// Config configures a Manager.
type Config struct {
	// InterfacePrefix starts the name of every host-side workload
	// interface; 1 to 7 bytes.
	InterfacePrefix string
	// MAC is the address of every host-side workload interface: one
	// fixed, locally administered unicast address, so a workload's
	// neighbour entry for its gateway never changes.
	MAC string
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if c.InterfacePrefix == "" {
		c.InterfacePrefix = DefaultInterfacePrefix
	}
	if c.MAC == "" {
		c.MAC = DefaultMAC
	}
}

// Validate reports what is wrong with the config.
func (c Config) Validate() error {
	var errs []error
	if err := nl.CheckName(c.InterfacePrefix); err != nil {
		errs = append(errs, fmt.Errorf("links: interface prefix: %w", err))
	} else if len(c.InterfacePrefix) > MaxPrefixLen {
		errs = append(errs, fmt.Errorf("links: interface prefix %q longer than %d bytes", c.InterfacePrefix, MaxPrefixLen))
	}
	if mac, err := net.ParseMAC(c.MAC); err != nil {
		errs = append(errs, fmt.Errorf("links: MAC: %w", err))
	} else if len(mac) != 6 || mac[0]&1 != 0 {
		errs = append(errs, fmt.Errorf("links: MAC %s is not a 48-bit unicast address", c.MAC))
	}
	return errors.Join(errs...)
}

// InterfaceName returns the host-side interface name for an endpoint:
// prefix followed by hex digits of the SHA-256 of endpointID, 15 bytes in
// all (IFNAMSIZ-1). It is deterministic, so the CNI plugin and the agent
// compute the same name independently. A prefix longer than MaxPrefixLen
// leaves fewer hash digits; Config.Validate rejects such prefixes.
func InterfaceName(prefix, endpointID string) string {
	if len(prefix) > nl.MaxNameLen-1 {
		prefix = prefix[:nl.MaxNameLen-1]
	}
	sum := sha256.Sum256([]byte(endpointID))
	return prefix + hex.EncodeToString(sum[:])[:nl.MaxNameLen-len(prefix)]
}

// Interface is a desired host-side workload interface.
type Interface struct {
	Name string
	IPv4 bool // the workload has IPv4 addresses
	IPv6 bool // the workload has IPv6 addresses
	// Neighbors are the workload's addresses with its MAC: they become
	// permanent neighbour entries on the interface, so the host never has
	// to resolve its workloads (and a workload cannot answer for another's
	// address). Permanent entries on the interface that are not listed are
	// deleted; none are kept when the MAC is unknown.
	Neighbors []Neighbor
}

// Neighbor is one permanent neighbour entry.
type Neighbor struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// Status tells whether a desired interface is ready.
type Status struct {
	Name       string
	Present    bool   // the link exists
	Configured bool   // present, and MAC, state and sysctls are as desired
	Problem    string // why it is not configured, if it is present
}

// Result says what an Apply did.
type Result struct {
	// Interfaces has one Status per desired interface, in Set's order.
	Interfaces []Status
	// Strays are interfaces with our prefix that are not desired, sorted.
	// Apply leaves them alone.
	Strays []string
	// Writes counts successful writes: sysctls, MACs, link states.
	Writes int
}

// Kernel is what a Manager needs from the kernel; *nl.Handle has it. Its
// methods are called from one goroutine at a time.
type Kernel interface {
	LinkList() ([]nl.Link, error)
	LinkSetMAC(index int, mac net.HardwareAddr) error
	LinkSetUp(index int) error
	SysctlGet(name string) (string, error)
	SysctlSet(name, value string) error
	NeighList(linkIndex int, fam nl.Family) ([]nl.Neigh, error)
	NeighSet(n nl.Neigh) error
	NeighDel(n nl.Neigh) error
}

// Manager configures the host side of workload interfaces in one
// namespace. Its methods are safe for concurrent use; Applies run one at a
// time.
type Manager struct {
	cfg Config
	mac net.HardwareAddr
	k   Kernel
	log *slog.Logger

	applyMu sync.Mutex // serialises Apply
	// configured maps the name of each interface the last Apply found
	// fully configured to what it was configured as; guarded by applyMu.
	configured map[string]configuredAs

	mu      sync.Mutex // guards desired
	desired []Interface
}

// configuredAs is what Apply configured an interface as: the link's index
// (a recreated veth gets a new one) and the desired interface.
type configuredAs struct {
	index int
	iface Interface
}

func (c configuredAs) matches(iface Interface, l nl.Link) bool {
	return c.index == l.Index && c.iface.IPv4 == iface.IPv4 && c.iface.IPv6 == iface.IPv6 &&
		slices.EqualFunc(c.iface.Neighbors, iface.Neighbors, func(a, b Neighbor) bool {
			return a.IP == b.IP && slices.Equal(a.MAC, b.MAC)
		})
}

// New returns a Manager. cfg gets its defaults and is validated; log may
// be nil to discard logs.
func New(cfg Config, k Kernel, log *slog.Logger) (*Manager, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mac, _ := net.ParseMAC(cfg.MAC)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, mac: mac, k: k, log: log, configured: map[string]configuredAs{}}, nil
}

// Config returns the manager's config, with defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Set replaces the desired interfaces. It does not touch the kernel; Apply
// does. The slice is copied. Set is idempotent and cheap.
func (m *Manager) Set(ifaces []Interface) {
	cp := slices.Clone(ifaces)
	m.mu.Lock()
	m.desired = cp
	m.mu.Unlock()
}

// sysctl is one setting.
type sysctl struct{ name, value string }

// interfaceSysctls returns the per-interface settings, in the order they
// are applied. Names use the slash form, which allows dots in names.
func interfaceSysctls(iface Interface) []sysctl {
	var s []sysctl
	n := iface.Name
	if iface.IPv4 {
		s = append(s,
			sysctl{"net/ipv4/conf/" + n + "/forwarding", "1"},
			sysctl{"net/ipv4/conf/" + n + "/proxy_arp", "1"},
			sysctl{"net/ipv4/neigh/" + n + "/proxy_delay", "0"},
			sysctl{"net/ipv4/conf/" + n + "/rp_filter", "1"},
		)
	}
	if iface.IPv6 {
		s = append(s,
			sysctl{"net/ipv6/conf/" + n + "/forwarding", "1"},
			sysctl{"net/ipv6/conf/" + n + "/accept_ra", "0"},
			sysctl{"net/ipv6/conf/" + n + "/proxy_ndp", "1"},
			sysctl{"net/ipv6/conf/" + n + "/accept_dad", "0"},
		)
	}
	return s
}

// Apply makes the kernel match the desired interfaces; see the package
// documentation. Problems with single interfaces are reported in their
// Status and joined into the returned error; an interface that disappears
// during Apply is reported as not present, without an error. Apply stops
// early when ctx is done. An interface that an earlier Apply configured,
// and that has the same index and desired state, is only checked for its
// MAC and link state (which the link list it reads anyway shows).
func (m *Manager) Apply(ctx context.Context) (Result, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	return m.apply(ctx)
}

// Verify is Apply that reads every setting of every interface again, so
// that it repairs drift: a sysctl or neighbour entry changed behind the
// agent's back.
func (m *Manager) Verify(ctx context.Context) (Result, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	clear(m.configured)
	return m.apply(ctx)
}

func (m *Manager) apply(ctx context.Context) (Result, error) {
	m.mu.Lock()
	desired := m.desired
	m.mu.Unlock()

	var res Result
	if err := ctx.Err(); err != nil {
		return res, err
	}
	links, err := m.k.LinkList()
	if err != nil {
		return res, fmt.Errorf("links: %w", err)
	}
	byName := map[string]nl.Link{}
	for _, l := range links {
		byName[l.Name] = l
	}

	var errs []error
	// Namespace-wide forwarding, when any interface needs it.
	var v4, v6 bool
	for _, i := range desired {
		v4, v6 = v4 || i.IPv4, v6 || i.IPv6
	}
	var global []sysctl
	if v4 {
		global = append(global, sysctl{"net/ipv4/ip_forward", "1"})
	}
	if v6 {
		global = append(global, sysctl{"net/ipv6/conf/all/forwarding", "1"})
	}
	if err := m.ensureSysctls(global, &res.Writes); err != nil {
		errs = append(errs, fmt.Errorf("links: %w", err))
	}

	wanted := map[string]bool{}
	for _, iface := range desired {
		wanted[iface.Name] = true
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		st := Status{Name: iface.Name}
		l, ok := byName[iface.Name]
		switch {
		case !strings.HasPrefix(iface.Name, m.cfg.InterfacePrefix):
			st.Present = ok
			st.Problem = fmt.Sprintf("name lacks the prefix %q; not touched", m.cfg.InterfacePrefix)
			errs = append(errs, fmt.Errorf("links: interface %s: %s", iface.Name, st.Problem))
		case !ok:
		case m.configured[iface.Name].matches(iface, l) && slices.Equal(l.MAC, m.mac) && l.Up:
			st.Present, st.Configured = true, true
		default:
			st.Present = true
			delete(m.configured, iface.Name)
			err := m.configure(iface, l, &res.Writes)
			switch {
			case err == nil:
				st.Configured = true
				m.configured[iface.Name] = configuredAs{index: l.Index, iface: iface}
			case errors.Is(err, nl.ErrNotFound) && !m.exists(iface.Name):
				// Deleted under our feet (CNI DEL): simply absent.
				st.Present = false
			default:
				st.Problem = err.Error()
				errs = append(errs, fmt.Errorf("links: interface %s: %w", iface.Name, err))
			}
		}
		res.Interfaces = append(res.Interfaces, st)
	}

	for name := range m.configured {
		if !wanted[name] {
			delete(m.configured, name)
		}
	}
	for _, l := range links {
		if strings.HasPrefix(l.Name, m.cfg.InterfacePrefix) && !wanted[l.Name] {
			res.Strays = append(res.Strays, l.Name)
		}
	}
	slices.Sort(res.Strays)
	if res.Writes > 0 {
		m.log.Info("links applied", "writes", res.Writes, "interfaces", len(desired), "strays", len(res.Strays))
	}
	return res, errors.Join(errs...)
}

// exists reports whether the named link exists now; on error it assumes
// so, which keeps the error visible.
func (m *Manager) exists(name string) bool {
	links, err := m.k.LinkList()
	if err != nil {
		return true
	}
	return slices.ContainsFunc(links, func(l nl.Link) bool { return l.Name == name })
}

// configure brings one present interface to the desired state.
func (m *Manager) configure(iface Interface, l nl.Link, writes *int) error {
	if err := m.ensureSysctls(interfaceSysctls(iface), writes); err != nil {
		return err
	}
	if !slices.Equal(l.MAC, m.mac) {
		if err := m.k.LinkSetMAC(l.Index, m.mac); err != nil {
			return err
		}
		*writes++
		m.log.Debug("set MAC", "iface", l.Name, "mac", m.mac)
	}
	if !l.Up {
		if err := m.k.LinkSetUp(l.Index); err != nil {
			return err
		}
		*writes++
		m.log.Debug("set link up", "iface", l.Name)
	}
	return m.ensureNeighbors(iface, l, writes)
}

// ensureNeighbors makes the permanent neighbour entries of l exactly
// iface.Neighbors. Entries the kernel learned itself are left alone.
func (m *Manager) ensureNeighbors(iface Interface, l nl.Link, writes *int) error {
	cur, err := m.k.NeighList(l.Index, nl.FamilyAll)
	if err != nil {
		return err
	}
	have := map[netip.Addr]nl.Neigh{}
	for _, n := range cur {
		if n.Permanent {
			have[n.IP] = n
		}
	}
	want := map[netip.Addr]bool{}
	for _, n := range iface.Neighbors {
		want[n.IP] = true
		if h, ok := have[n.IP]; ok && slices.Equal(h.MAC, n.MAC) {
			continue
		}
		if err := m.k.NeighSet(nl.Neigh{LinkIndex: l.Index, IP: n.IP, MAC: n.MAC, Permanent: true}); err != nil {
			return err
		}
		*writes++
		m.log.Debug("set neighbour", "iface", l.Name, "ip", n.IP, "mac", n.MAC)
	}
	for ip, n := range have {
		if want[ip] {
			continue
		}
		if err := m.k.NeighDel(n); err != nil && !errors.Is(err, nl.ErrNotFound) {
			return err
		}
		*writes++
		m.log.Debug("deleted neighbour", "iface", l.Name, "ip", ip)
	}
	return nil
}

// ensureSysctls writes the settings that differ.
func (m *Manager) ensureSysctls(s []sysctl, writes *int) error {
	for _, c := range s {
		cur, err := m.k.SysctlGet(c.name)
		if err != nil {
			return err
		}
		if cur == c.value {
			continue
		}
		if err := m.k.SysctlSet(c.name, c.value); err != nil {
			return err
		}
		*writes++
		m.log.Debug("set sysctl", "sysctl", c.name, "value", c.value, "was", cur)
	}
	return nil
}
