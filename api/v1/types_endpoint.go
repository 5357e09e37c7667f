package v1

// Node is a host that runs the Tabby agent. It is cluster-scoped and named
// after the host.
type Node struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
	Spec     NodeSpec   `json:"spec"`
}

// NodeSpec is the specification of a Node.
type NodeSpec struct {
	// BGP holds the node's BGP settings; a node without them does not
	// speak BGP.
	BGP *NodeBGPSpec `json:"bgp,omitempty"`
	// Addresses lists the node's addresses, for information.
	Addresses []NodeAddress `json:"addresses,omitempty"`
}

// NodeBGPSpec is the BGP configuration of one node.
type NodeBGPSpec struct {
	// IPv4Address is the node's IPv4 address with the prefix length of
	// its subnet, such as "10.0.0.1/24" (a bare address is accepted). It
	// is the BGP router ID and the IPv4 next hop.
	IPv4Address string `json:"ipv4Address,omitempty"`
	// IPv6Address is the node's IPv6 address in CIDR form.
	IPv6Address string `json:"ipv6Address,omitempty"`
	// ASNumber is the node's AS number; unset means the one in the
	// default BGPConfiguration.
	ASNumber *ASNumber `json:"asNumber,omitempty"`
	// RouteReflectorClusterID, when set, makes the node a route reflector
	// with this cluster ID (an IPv4 address).
	RouteReflectorClusterID string `json:"routeReflectorClusterID,omitempty"`
}

// NodeAddress is one address of a node.
type NodeAddress struct {
	// Address is an IP address, optionally in CIDR form.
	Address string `json:"address"`
	// Type is "InternalIP" or "ExternalIP", or empty.
	Type string `json:"type,omitempty"`
}

// The node address types.
const (
	NodeInternalIP = "InternalIP"
	NodeExternalIP = "ExternalIP"
)

// WorkloadEndpoint is the network interface of a workload (a container, a
// pod or a VM) on a node. It is namespaced.
type WorkloadEndpoint struct {
	TypeMeta
	Metadata ObjectMeta           `json:"metadata"`
	Spec     WorkloadEndpointSpec `json:"spec"`
}

// WorkloadEndpointSpec is the specification of a WorkloadEndpoint.
type WorkloadEndpointSpec struct {
	// Orchestrator names what created the workload ("k8s", "cni",
	// "docker", "openstack", ...). It is also the value of the implicit
	// label LabelOrchestrator.
	Orchestrator string `json:"orchestrator,omitempty"`
	// Workload names the workload within the orchestrator.
	Workload string `json:"workload,omitempty"`
	// Node is the node the endpoint is on. Required; it cannot change.
	Node string `json:"node,omitempty"`
	// ContainerID is the ID of the container, for CNI.
	ContainerID string `json:"containerID,omitempty"`
	// Pod is the Kubernetes pod name, for Kubernetes workloads.
	Pod string `json:"pod,omitempty"`
	// Endpoint names the interface within the workload ("eth0").
	Endpoint string `json:"endpoint,omitempty"`
	// ServiceAccountName is the workload's service account.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// IPNetworks are the endpoint's addresses as /32 and /128 CIDRs.
	IPNetworks []string `json:"ipNetworks,omitempty"`
	// IPNATs are 1:1 NAT mappings to addresses in IPNetworks.
	IPNATs []IPNAT `json:"ipNATs,omitempty"`
	// IPv4Gateway and IPv6Gateway are the gateway addresses the workload
	// uses.
	IPv4Gateway string `json:"ipv4Gateway,omitempty"`
	IPv6Gateway string `json:"ipv6Gateway,omitempty"`
	// Profiles are applied to the endpoint after its policies, in order.
	Profiles []string `json:"profiles,omitempty"`
	// InterfaceName is the host-side interface name.
	InterfaceName string `json:"interfaceName,omitempty"`
	// MAC is the workload-side MAC address.
	MAC string `json:"mac,omitempty"`
	// Ports are the endpoint's named ports, for rules that match ports by
	// name, and its host ports.
	Ports []WorkloadEndpointPort `json:"ports,omitempty"`
	// AllowSpoofedSourcePrefixes lists prefixes the workload may send
	// from besides its own addresses.
	AllowSpoofedSourcePrefixes []string `json:"allowSpoofedSourcePrefixes,omitempty"`
}

// IPNAT is a 1:1 NAT mapping of an external address to an endpoint
// address.
type IPNAT struct {
	InternalIP string `json:"internalIP"`
	ExternalIP string `json:"externalIP"`
}

// WorkloadEndpointPort is a named port and/or host port of a workload.
type WorkloadEndpointPort struct {
	Name     string   `json:"name,omitempty"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
	HostPort uint16   `json:"hostPort,omitempty"`
	HostIP   string   `json:"hostIP,omitempty"`
}

// HostEndpoint is a network interface of a node that policy protects. It
// is cluster-scoped.
type HostEndpoint struct {
	TypeMeta
	Metadata ObjectMeta       `json:"metadata"`
	Spec     HostEndpointSpec `json:"spec"`
}

// HostEndpointSpec is the specification of a HostEndpoint.
type HostEndpointSpec struct {
	// Node is the node the interface is on. Required.
	Node string `json:"node,omitempty"`
	// InterfaceName is the interface, or "*" for all of the node's
	// interfaces. InterfaceName or ExpectedIPs is required.
	InterfaceName string `json:"interfaceName,omitempty"`
	// ExpectedIPs are the interface's addresses; policy uses them when
	// other endpoints' rules select this host endpoint.
	ExpectedIPs []string `json:"expectedIPs,omitempty"`
	// Profiles are applied to the endpoint after its policies, in order.
	Profiles []string `json:"profiles,omitempty"`
	// Ports are the endpoint's named ports.
	Ports []EndpointPort `json:"ports,omitempty"`
}

// EndpointPort is a named port of a host endpoint.
type EndpointPort struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
}

// Namespace is a Tabby namespace: a scope for namespaced resources whose
// labels namespace selectors match. It is cluster-scoped and has no spec.
type Namespace struct {
	TypeMeta
	Metadata ObjectMeta    `json:"metadata"`
	Spec     NamespaceSpec `json:"spec,omitzero"`
}

// NamespaceSpec is empty; it exists so that Namespace has the shape of
// the other kinds.
type NamespaceSpec struct{}
