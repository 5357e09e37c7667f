package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Defaults of Config.
const (
	DefaultListenPort   = 179
	DefaultRestartTime  = 120 * time.Second
	DefaultDeferralTime = 30 * time.Second
	// DefaultLearnedResync is how often learned routes are read from GoBGP
	// and installed again even with no event, to repair drift.
	DefaultLearnedResync = 60 * time.Second
)

const (
	maxGracefulRestartTime = 4095 * time.Second // 12 bits in the capability
	// Elevated advertisements carry LOCAL_PREF 200 (the default is 100)
	// and the community 64512:200.
	elevatedLocalPreference = 200
	elevatedCommunity       = 64512<<16 | 200
	// defaultLearnedDebounce lets a burst of best path events gather
	// before the learned routes are read back.
	defaultLearnedDebounce = 2 * time.Millisecond
	// Above this many changed prefixes, all best paths are read at once.
	largeRefreshPrefixesCutoff = 4096
)

// Config configures a Speaker.
type Config struct {
	// NodeName names the node, for logs.
	NodeName string
	// ASNumber is the node's AS number.
	ASNumber uint32
	// IPv4Address and IPv6Address are the node's addresses: the next hops
	// of the IPv4 and IPv6 routes it advertises (IPv6 routes carry
	// IPv6Address as their next hop even over IPv4 sessions). At least
	// one is required.
	IPv4Address netip.Addr
	IPv6Address netip.Addr
	// RouterID is the BGP identifier, an IPv4 address. Default:
	// IPv4Address.
	RouterID netip.Addr
	// ListenPort is the TCP port to accept sessions on (default 179); -1
	// accepts none, so that every session must be dialled by this side.
	ListenPort int
	// ListenAddresses are the local addresses to listen on. Default: the
	// unspecified address of each family the node has an address of.
	ListenAddresses []netip.Addr
	// GracefulRestart configures graceful restart (RFC 4724).
	GracefulRestart GracefulRestart
	// LocalAddrs returns the addresses of the node's interfaces with the
	// prefix lengths of their subnets; the safety filter never installs a
	// learned route that overlaps one of those subnets or contains one of
	// those addresses. Default: the interfaces of the speaker's network
	// namespace, read with the standard library.
	LocalAddrs func() ([]netip.Prefix, error)
}

// GracefulRestart configures graceful restart. With it enabled, the
// speaker advertises the graceful restart capability with the forwarding
// state preserved for IPv4 and IPv6 unicast, keeps the routes of a peer
// that restarts for the restart time the peer asks for, and stops without
// sending NOTIFICATIONs, so that its peers keep its routes while the agent
// restarts.
type GracefulRestart struct {
	Enabled bool
	// RestartTime is how long peers keep this node's routes after its
	// sessions go down (default 120s, at most 4095s, whole seconds).
	RestartTime time.Duration
	// DeferralTime bounds how long, after Start, learned routes are held
	// back from the kernel while peers are still sending their routes
	// (End-of-RIB not yet received), so that a restarting agent does not
	// delete the routes its previous run installed (default 30s).
	DeferralTime time.Duration
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if !c.RouterID.IsValid() && c.IPv4Address.Is4() {
		c.RouterID = c.IPv4Address
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultListenPort
	}
	if len(c.ListenAddresses) == 0 {
		if c.IPv4Address.IsValid() {
			c.ListenAddresses = append(c.ListenAddresses, netip.IPv4Unspecified())
		}
		if c.IPv6Address.IsValid() {
			c.ListenAddresses = append(c.ListenAddresses, netip.IPv6Unspecified())
		}
	}
	if c.GracefulRestart.RestartTime == 0 {
		c.GracefulRestart.RestartTime = DefaultRestartTime
	}
	if c.GracefulRestart.DeferralTime == 0 {
		c.GracefulRestart.DeferralTime = DefaultDeferralTime
	}
	if c.LocalAddrs == nil {
		c.LocalAddrs = interfaceAddrs
	}
}

// Validate reports what is wrong with c, after Defaults.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("bgp: "+format, args...)) }
	if c.NodeName == "" {
		add("node name is required")
	}
	if c.ASNumber == 0 {
		add("AS number is required")
	}
	if !c.IPv4Address.IsValid() && !c.IPv6Address.IsValid() {
		add("the node needs an IPv4 or IPv6 address")
	}
	if c.IPv4Address.IsValid() && !c.IPv4Address.Is4() {
		add("IPv4 address %s is not IPv4", c.IPv4Address)
	}
	if c.IPv6Address.IsValid() && (!c.IPv6Address.Is6() || c.IPv6Address.Is4In6() || c.IPv6Address.IsLinkLocalUnicast()) {
		add("IPv6 address %s is not a global IPv6 address", c.IPv6Address)
	}
	if !c.RouterID.Is4() {
		add("router ID must be an IPv4 address (none given and no IPv4 address to take it from)")
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		add("listen port %d out of range", c.ListenPort)
	}
	for _, a := range c.ListenAddresses {
		if !a.IsValid() {
			add("invalid listen address")
		}
	}
	if gr := c.GracefulRestart; gr.Enabled {
		if err := checkRestartTime(gr.RestartTime); err != nil {
			add("graceful restart: %v", err)
		}
		if gr.DeferralTime < 0 {
			add("graceful restart: negative deferral time")
		}
	}
	return errors.Join(errs...)
}

func checkRestartTime(d time.Duration) error {
	if d < time.Second || d > maxGracefulRestartTime || d%time.Second != 0 {
		return fmt.Errorf("restart time %s must be whole seconds from 1s to %s", d, maxGracefulRestartTime)
	}
	return nil
}

// interfaceAddrs is the default Config.LocalAddrs: every address of the
// namespace's interfaces, read with one request (it runs at every change
// of the learned routes; asking per interface would dump every address
// once per workload veth).
func interfaceAddrs() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}
