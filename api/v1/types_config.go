package v1

import "time"

// Configuration holds the settings of the Tabby agent, like Calico's
// FelixConfiguration: "default" for all nodes and "node.<nodename>" for
// one node, whose set fields override the default ones. It is
// cluster-scoped. See EffectiveConfiguration.
//
// SetDefaults fills the defaults into "default" only; in a per-node
// Configuration an unset field means "as in default".
type Configuration struct {
	TypeMeta
	Metadata ObjectMeta        `json:"metadata"`
	Spec     ConfigurationSpec `json:"spec"`
}

// ConfigurationSpec is the specification of a Configuration. The JSON
// names are those of Calico's FelixConfiguration.
type ConfigurationSpec struct {
	// LogSeverityScreen is the agent's log level: Trace, Debug, Info (the
	// default), Warning, Error or Fatal.
	LogSeverityScreen string `json:"logSeverityScreen,omitempty"`
	// ReportingInterval is how often the agent reports its status to the
	// datastore (default 30s); 0 turns reporting off.
	ReportingInterval *Duration `json:"reportingInterval,omitempty"`
	// RouteRefreshInterval is how often routes are resynced with the
	// kernel (default 90s); 0 turns the periodic resync off.
	RouteRefreshInterval *Duration `json:"routeRefreshInterval,omitempty"`
	// NftablesRefreshInterval is how often Tabby's nftables tables are
	// resynced with the kernel (default 180s); 0 turns the periodic
	// resync off. A FelixConfiguration's iptablesRefreshInterval becomes
	// this field.
	NftablesRefreshInterval *Duration `json:"nftablesRefreshInterval,omitempty"`
	// DefaultEndpointToHostAction is what happens to traffic from a
	// workload to its own host once the workload's egress policy has
	// allowed it: Drop (the default), Accept, or Return (go on to the
	// host endpoint's policy).
	DefaultEndpointToHostAction string `json:"defaultEndpointToHostAction,omitempty"`
	// FailsafeInboundHostPorts are always allowed into host endpoints,
	// whatever the policy, so that a bad policy cannot cut a host off.
	// The default is DefaultFailsafeInboundHostPorts; an empty list
	// allows none.
	FailsafeInboundHostPorts *[]ProtoPort `json:"failsafeInboundHostPorts,omitempty"`
	// FailsafeOutboundHostPorts are always allowed out of host endpoints.
	// The default is DefaultFailsafeOutboundHostPorts.
	FailsafeOutboundHostPorts *[]ProtoPort `json:"failsafeOutboundHostPorts,omitempty"`
	// InterfacePrefix starts the names of the host-side interfaces of
	// workloads (default "tabby"); Tabby owns every interface whose name
	// starts with it. At most 7 characters, so that workload interface
	// names (15 characters) keep at least 8 hex digits of hash.
	InterfacePrefix string `json:"interfacePrefix,omitempty"`
	// DeviceRouteProtocol is the route protocol number of the routes
	// Tabby installs (default 80); Tabby owns every route with it. It
	// must be 5-255: 0-4 are the kernel's own (unspec, redirect, kernel,
	// boot, static).
	DeviceRouteProtocol int `json:"deviceRouteProtocol,omitempty"`
	// HealthPort is the port of the agent's health endpoint (default
	// 9099).
	HealthPort int `json:"healthPort,omitempty"`
	// PrometheusMetricsEnabled serves Prometheus metrics (default false).
	PrometheusMetricsEnabled *bool `json:"prometheusMetricsEnabled,omitempty"`
	// PrometheusMetricsPort is the port of the metrics endpoint (default
	// 9091).
	PrometheusMetricsPort int `json:"prometheusMetricsPort,omitempty"`
	// LogPrefix starts the kernel log lines of packets that a Log rule
	// matches (default "tabby-packet"); at most 127 printable ASCII
	// characters, without double quotes.
	LogPrefix string `json:"logPrefix,omitempty"`
	// NATOutgoingAddress is the IPv4 source address for traffic from
	// pools with natOutgoing; empty means the address of the outgoing
	// interface (masquerade).
	NATOutgoingAddress string `json:"natOutgoingAddress,omitempty"`
	// IPv6Support turns IPv6 handling on (default true).
	IPv6Support *bool `json:"ipv6Support,omitempty"`
}

// ProtoPort is a protocol, a port and optionally a CIDR the port is
// allowed to or from.
type ProtoPort struct {
	// Protocol is TCP, UDP or SCTP (any case; stored upper case).
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
	// Net limits the entry to peers in this CIDR.
	Net string `json:"net,omitempty"`
}

// The defaults of ConfigurationSpec.
const (
	DefaultLogSeverity                      = "Info"
	DefaultReportingInterval                = 30 * time.Second
	DefaultRouteRefreshInterval             = 90 * time.Second
	DefaultNftablesRefreshInterval          = 180 * time.Second
	DefaultEndpointToHostAction             = "Drop"
	DefaultInterfacePrefix                  = "tabby"
	DefaultDeviceRouteProtocol              = 80
	DefaultHealthPort                       = 9099
	DefaultPrometheusMetricsPort            = 9091
	DefaultLogPrefix                        = "tabby-packet"
	DefaultBGPListenPort           uint16   = 179
	DefaultASNumber                ASNumber = 64512
)

// DefaultFailsafeInboundHostPorts returns Calico's default inbound
// failsafe ports: SSH, DHCP client, BGP, etcd, Typha and the Kubernetes
// API server and etcd ports.
func DefaultFailsafeInboundHostPorts() []ProtoPort {
	return []ProtoPort{
		{Protocol: "TCP", Port: 22},
		{Protocol: "UDP", Port: 68},
		{Protocol: "TCP", Port: 179},
		{Protocol: "TCP", Port: 2379},
		{Protocol: "TCP", Port: 2380},
		{Protocol: "TCP", Port: 5473},
		{Protocol: "TCP", Port: 6443},
		{Protocol: "TCP", Port: 6666},
		{Protocol: "TCP", Port: 6667},
	}
}

// DefaultFailsafeOutboundHostPorts returns Calico's default outbound
// failsafe ports: DNS, DHCP, BGP, etcd, Typha and the Kubernetes API
// server and etcd ports.
func DefaultFailsafeOutboundHostPorts() []ProtoPort {
	return []ProtoPort{
		{Protocol: "UDP", Port: 53},
		{Protocol: "UDP", Port: 67},
		{Protocol: "TCP", Port: 179},
		{Protocol: "TCP", Port: 2379},
		{Protocol: "TCP", Port: 2380},
		{Protocol: "TCP", Port: 5473},
		{Protocol: "TCP", Port: 6443},
		{Protocol: "TCP", Port: 6666},
		{Protocol: "TCP", Port: 6667},
	}
}

// DefaultConfigurationSpec returns a ConfigurationSpec with every field
// set to its default.
func DefaultConfigurationSpec() ConfigurationSpec {
	in, out := DefaultFailsafeInboundHostPorts(), DefaultFailsafeOutboundHostPorts()
	return ConfigurationSpec{
		LogSeverityScreen:           DefaultLogSeverity,
		ReportingInterval:           &Duration{DefaultReportingInterval},
		RouteRefreshInterval:        &Duration{DefaultRouteRefreshInterval},
		NftablesRefreshInterval:     &Duration{DefaultNftablesRefreshInterval},
		DefaultEndpointToHostAction: DefaultEndpointToHostAction,
		FailsafeInboundHostPorts:    &in,
		FailsafeOutboundHostPorts:   &out,
		InterfacePrefix:             DefaultInterfacePrefix,
		DeviceRouteProtocol:         DefaultDeviceRouteProtocol,
		HealthPort:                  DefaultHealthPort,
		PrometheusMetricsEnabled:    boolPtr(false),
		PrometheusMetricsPort:       DefaultPrometheusMetricsPort,
		LogPrefix:                   DefaultLogPrefix,
		IPv6Support:                 boolPtr(true),
	}
}

// EffectiveConfiguration returns the settings of a node: the defaults,
// overridden by the fields set in global (the "default" Configuration),
// overridden by those set in node (its "node.<nodename>" one). Either may
// be nil.
func EffectiveConfiguration(global, node *Configuration) ConfigurationSpec {
	s := DefaultConfigurationSpec()
	for _, c := range []*Configuration{global, node} {
		if c != nil {
			s.overlay(&c.Spec)
		}
	}
	return s
}

// overlay copies the fields set in o over s.
func (s *ConfigurationSpec) overlay(o *ConfigurationSpec) {
	setString(&s.LogSeverityScreen, o.LogSeverityScreen)
	setPtr(&s.ReportingInterval, o.ReportingInterval)
	setPtr(&s.RouteRefreshInterval, o.RouteRefreshInterval)
	setPtr(&s.NftablesRefreshInterval, o.NftablesRefreshInterval)
	setString(&s.DefaultEndpointToHostAction, o.DefaultEndpointToHostAction)
	setPtr(&s.FailsafeInboundHostPorts, o.FailsafeInboundHostPorts)
	setPtr(&s.FailsafeOutboundHostPorts, o.FailsafeOutboundHostPorts)
	setString(&s.InterfacePrefix, o.InterfacePrefix)
	setInt(&s.DeviceRouteProtocol, o.DeviceRouteProtocol)
	setInt(&s.HealthPort, o.HealthPort)
	setPtr(&s.PrometheusMetricsEnabled, o.PrometheusMetricsEnabled)
	setInt(&s.PrometheusMetricsPort, o.PrometheusMetricsPort)
	setString(&s.LogPrefix, o.LogPrefix)
	setString(&s.NATOutgoingAddress, o.NATOutgoingAddress)
	setPtr(&s.IPv6Support, o.IPv6Support)
}

// EffectiveBGPConfiguration returns the BGP settings of a node: the
// defaults, overridden by the fields set in global (the "default"
// BGPConfiguration), overridden by those set in node (its
// "node.<nodename>" one). ExtraPrefixes of both are combined. Either may
// be nil.
func EffectiveBGPConfiguration(global, node *BGPConfiguration) BGPConfigurationSpec {
	asn := DefaultASNumber
	s := BGPConfigurationSpec{
		LogSeverityScreen:     DefaultLogSeverity,
		NodeToNodeMeshEnabled: boolPtr(true),
		ASNumber:              &asn,
		ListenPort:            DefaultBGPListenPort,
	}
	for _, c := range []*BGPConfiguration{global, node} {
		if c == nil {
			continue
		}
		setString(&s.LogSeverityScreen, c.Spec.LogSeverityScreen)
		setPtr(&s.NodeToNodeMeshEnabled, c.Spec.NodeToNodeMeshEnabled)
		setPtr(&s.ASNumber, c.Spec.ASNumber)
		if c.Spec.ListenPort != 0 {
			s.ListenPort = c.Spec.ListenPort
		}
		s.ExtraPrefixes = append(s.ExtraPrefixes, c.Spec.ExtraPrefixes...)
	}
	return s
}

func setString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func setPtr[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

func boolPtr(b bool) *bool { return &b }
