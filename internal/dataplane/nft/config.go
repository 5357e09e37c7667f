package nft

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// EndpointToHostAction is what happens to traffic from a workload to its
// own host once the workload's egress policy allowed it.
type EndpointToHostAction string

// The endpoint-to-host actions (the values of the agent configuration's
// defaultEndpointToHostAction).
const (
	// EndpointToHostDrop drops it: a workload cannot reach its host.
	EndpointToHostDrop EndpointToHostAction = "Drop"
	// EndpointToHostAccept accepts it.
	EndpointToHostAccept EndpointToHostAction = "Accept"
	// EndpointToHostReturn goes on to host endpoint policy: the ingress
	// chain of the all-interfaces ("*") host endpoint, if there is one;
	// else the packet is accepted.
	EndpointToHostReturn EndpointToHostAction = "Return"
)

// Defaults.
const (
	DefaultTableName       = "tabby"
	DefaultInterfacePrefix = "tabby"
	DefaultLogPrefix       = "tabby-packet"
	// DefaultAcceptMark and DefaultPassMark are the packet mark bits the
	// chains use to say "allowed" and "passed to the next tier" (Calico's
	// defaults).
	DefaultAcceptMark uint32 = 0x00010000
	DefaultPassMark   uint32 = 0x00020000
)

// maxLogPrefix is the longest log prefix the kernel keeps
// (NF_LOG_PREFIXLEN 128, with the terminating NUL).
const maxLogPrefix = 127

// Config configures a Renderer.
type Config struct {
	// TableName is the inet table Tabby owns whole (default "tabby").
	TableName string
	// InterfacePrefix starts the name of every host-side workload
	// interface (default "tabby"; the links manager's prefix). Traffic of
	// such an interface that no endpoint claims is dropped.
	InterfacePrefix string
	// EndpointToHost is the defaultEndpointToHostAction (default Drop).
	EndpointToHost EndpointToHostAction
	// LogPrefix starts the prefix of the kernel log lines that Log rules
	// write (default "tabby-packet"); at most 127 printable ASCII
	// characters without double quotes.
	LogPrefix string
	// AcceptMark and PassMark are two distinct single bits of the packet
	// mark that the chains use internally (defaults 0x10000 and 0x20000).
	AcceptMark uint32
	PassMark   uint32
	// NATOutgoingPools are the pools with natOutgoing: traffic from them
	// to a destination outside AllPools is masqueraded (or SNATed to
	// NATOutgoingAddress). They can be changed later with SetPools.
	NATOutgoingPools []netip.Prefix
	// AllPools are all IP pools of the cluster.
	AllPools []netip.Prefix
	// NATOutgoingAddress, if valid, is the IPv4 source address for IPv4
	// natOutgoing traffic instead of the outgoing interface's address.
	NATOutgoingAddress netip.Addr
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if c.TableName == "" {
		c.TableName = DefaultTableName
	}
	if c.InterfacePrefix == "" {
		c.InterfacePrefix = DefaultInterfacePrefix
	}
	if c.EndpointToHost == "" {
		c.EndpointToHost = EndpointToHostDrop
	}
	if c.LogPrefix == "" {
		c.LogPrefix = DefaultLogPrefix
	}
	if c.AcceptMark == 0 {
		c.AcceptMark = DefaultAcceptMark
	}
	if c.PassMark == 0 {
		c.PassMark = DefaultPassMark
	}
}

// Validate reports what is wrong with the config.
func (c Config) Validate() error {
	var errs []error
	if !validIdent(c.TableName) || strings.Contains(c.TableName, "/") || len(c.TableName) > maxNameLen {
		errs = append(errs, fmt.Errorf("nft: table name %q: want 1-%d letters, digits, '_', '-' or '.', starting with a letter or digit", c.TableName, maxNameLen))
	}
	if n := len(c.InterfacePrefix); n < 1 || n > 7 || !validIdent(c.InterfacePrefix) || strings.Contains(c.InterfacePrefix, "/") {
		errs = append(errs, fmt.Errorf("nft: interface prefix %q: want 1-7 letters, digits, '_', '-' or '.'", c.InterfacePrefix))
	}
	switch c.EndpointToHost {
	case EndpointToHostDrop, EndpointToHostAccept, EndpointToHostReturn:
	default:
		errs = append(errs, fmt.Errorf("nft: endpoint-to-host action %q: want Drop, Accept or Return", c.EndpointToHost))
	}
	if len(c.LogPrefix) > maxLogPrefix {
		errs = append(errs, fmt.Errorf("nft: log prefix longer than %d bytes", maxLogPrefix))
	}
	for _, r := range c.LogPrefix {
		if r < 0x20 || r > 0x7e || r == '"' {
			errs = append(errs, fmt.Errorf("nft: log prefix %q: only printable ASCII without '\"'", c.LogPrefix))
			break
		}
	}
	if bits.OnesCount32(c.AcceptMark) != 1 || bits.OnesCount32(c.PassMark) != 1 || c.AcceptMark == c.PassMark {
		errs = append(errs, fmt.Errorf("nft: accept mark %#x and pass mark %#x must be two distinct single bits", c.AcceptMark, c.PassMark))
	}
	for _, p := range append(append([]netip.Prefix(nil), c.NATOutgoingPools...), c.AllPools...) {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("nft: invalid pool %v", p))
		}
	}
	if c.NATOutgoingAddress.IsValid() && !c.NATOutgoingAddress.Unmap().Is4() {
		errs = append(errs, fmt.Errorf("nft: NAT outgoing address %s is not IPv4", c.NATOutgoingAddress))
	}
	return errors.Join(errs...)
}

// validIdent reports whether s is a name nft's parser accepts unquoted and
// that we allow: letters, digits, '_', '-', '.' and '/', starting with a
// letter or digit.
func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '-' || c == '.' || c == '/'):
		default:
			return false
		}
	}
	return true
}
