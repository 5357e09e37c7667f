package v1

// IPPool is a range of addresses that workload addresses are allocated
// from, in blocks that are affine to nodes and advertised by BGP. It is
// cluster-scoped. Pools must not overlap (see CheckPoolOverlap).
type IPPool struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
	Spec     IPPoolSpec `json:"spec"`
}

// IPPoolSpec is the specification of an IPPool.
type IPPoolSpec struct {
	// CIDR is the pool's range, strictly masked. It cannot change.
	CIDR string `json:"cidr"`
	// VXLANMode and IPIPMode exist for Calico compatibility. Tabby has no
	// overlay, so the only value accepted is "Never" (or empty).
	VXLANMode EncapMode `json:"vxlanMode,omitempty"`
	IPIPMode  EncapMode `json:"ipipMode,omitempty"`
	// NATOutgoing masquerades traffic from the pool to destinations
	// outside all pools.
	NATOutgoing bool `json:"natOutgoing,omitempty"`
	// Disabled stops new allocations from the pool; existing ones stay.
	Disabled bool `json:"disabled,omitempty"`
	// DisableBGPExport stops nodes from advertising the pool's blocks.
	DisableBGPExport bool `json:"disableBGPExport,omitempty"`
	// BlockSize is the prefix length of the blocks, 20-32 for IPv4
	// (default 26) and 116-128 for IPv6 (default 122). It must not be
	// shorter than the pool's prefix and cannot change.
	BlockSize int `json:"blockSize,omitempty"`
	// NodeSelector selects the nodes that allocate from the pool
	// (default "all()").
	NodeSelector string `json:"nodeSelector,omitempty"`
	// AllowedUses lists what addresses of the pool may be used for:
	// "Workload" (the default) and "Tunnel". Tabby allocates no tunnel
	// addresses; "Tunnel" is accepted for Calico compatibility.
	AllowedUses []IPPoolAllowedUse `json:"allowedUses,omitempty"`
}

// EncapMode is Calico's IPIP or VXLAN mode of a pool.
type EncapMode string

// EncapNever is the only encapsulation mode Tabby supports.
const EncapNever EncapMode = "Never"

// IPPoolAllowedUse is a use of a pool's addresses.
type IPPoolAllowedUse string

// The pool uses.
const (
	IPPoolAllowedUseWorkload IPPoolAllowedUse = "Workload"
	IPPoolAllowedUseTunnel   IPPoolAllowedUse = "Tunnel"
)

// IPAMConfiguration holds the settings of address allocation. There is
// one, named "default"; it is cluster-scoped.
type IPAMConfiguration struct {
	TypeMeta
	Metadata ObjectMeta            `json:"metadata"`
	Spec     IPAMConfigurationSpec `json:"spec"`
}

// IPAMConfigurationSpec is the specification of an IPAMConfiguration.
type IPAMConfigurationSpec struct {
	// StrictAffinity forbids a node to allocate from blocks affine to
	// other nodes.
	StrictAffinity bool `json:"strictAffinity"`
	// MaxBlocksPerHost limits the blocks affine to one node; 0 means no
	// limit.
	MaxBlocksPerHost int `json:"maxBlocksPerHost,omitempty"`
	// AutoAllocateBlocks lets nodes claim new blocks when theirs are full
	// (default true).
	AutoAllocateBlocks *bool `json:"autoAllocateBlocks,omitempty"`
	// ReleaseCooldownSeconds is a Tabby extension: a released address is
	// not handed out again for this many seconds, so that connections and
	// caches that still name it die out first. 0 means no cooldown.
	ReleaseCooldownSeconds int `json:"releaseCooldownSeconds,omitempty"`
}

// BGPConfiguration holds BGP settings: "default" for the whole cluster,
// "node.<nodename>" to override some of them for one node. It is
// cluster-scoped. See EffectiveBGPConfiguration.
type BGPConfiguration struct {
	TypeMeta
	Metadata ObjectMeta           `json:"metadata"`
	Spec     BGPConfigurationSpec `json:"spec"`
}

// BGPConfigurationSpec is the specification of a BGPConfiguration.
type BGPConfigurationSpec struct {
	// LogSeverityScreen is the BGP speaker's log level: Debug, Info
	// (the default), Warning, Error or Fatal.
	LogSeverityScreen string `json:"logSeverityScreen,omitempty"`
	// NodeToNodeMeshEnabled peers every node with every other node
	// (default true). Only in "default".
	NodeToNodeMeshEnabled *bool `json:"nodeToNodeMeshEnabled,omitempty"`
	// ASNumber is the AS number of nodes that do not set their own
	// (default 64512). Only in "default".
	ASNumber *ASNumber `json:"asNumber,omitempty"`
	// ListenPort is the TCP port the BGP speaker listens on (default
	// 179).
	ListenPort uint16 `json:"listenPort,omitempty"`
	// ExtraPrefixes is a Tabby extension: CIDRs that nodes advertise in
	// addition to their blocks (all nodes in "default", one node in
	// "node.<nodename>").
	ExtraPrefixes []string `json:"extraPrefixes,omitempty"`
}

// BGPPeer is a BGP peering: from all nodes (no node and no nodeSelector),
// from one node, or from the nodes that nodeSelector selects; to peerIP or
// to the nodes that peerSelector selects. It is cluster-scoped.
type BGPPeer struct {
	TypeMeta
	Metadata ObjectMeta  `json:"metadata"`
	Spec     BGPPeerSpec `json:"spec"`
}

// BGPPeerSpec is the specification of a BGPPeer.
type BGPPeerSpec struct {
	// Node is the one node that has this peering.
	Node string `json:"node,omitempty"`
	// NodeSelector selects the nodes that have this peering.
	NodeSelector string `json:"nodeSelector,omitempty"`
	// PeerIP is the peer's address, optionally with a port:
	// "10.0.0.1", "10.0.0.1:1179", "fd00::1" or "[fd00::1]:1179".
	PeerIP string `json:"peerIP,omitempty"`
	// ASNumber is the peer's AS number; required with PeerIP.
	ASNumber ASNumber `json:"asNumber,omitempty"`
	// PeerSelector selects Tabby nodes to peer with, instead of PeerIP.
	PeerSelector string `json:"peerSelector,omitempty"`
	// KeepOriginalNextHop advertises routes with their original next hop
	// instead of the node's address.
	KeepOriginalNextHop bool `json:"keepOriginalNextHop,omitempty"`
	// Password is the TCP MD5 password of the session.
	Password *BGPPassword `json:"password,omitempty"`
	// SourceAddress is "UseNodeIP" (the default: the node's address is
	// the session's source) or "None".
	SourceAddress SourceAddress `json:"sourceAddress,omitempty"`
	// KeepaliveTime is the BGP keepalive interval, whole seconds from 1s
	// to 21845s; the hold time is three times as long. Unset means the
	// speaker's default.
	KeepaliveTime *Duration `json:"keepaliveTime,omitempty"`
	// MaxRestartTime enables graceful restart with this restart time,
	// whole seconds from 1s to 4095s.
	MaxRestartTime *Duration `json:"maxRestartTime,omitempty"`
}

// BGPPassword holds a BGP password. Tabby takes the password in Value;
// SecretKeyRef (a Kubernetes secret, in Calico) is accepted by the decoder
// but rejected by Validate, because Tabby does not read Kubernetes
// secrets.
type BGPPassword struct {
	Value        string             `json:"value,omitempty"`
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// SecretKeySelector names a key of a Kubernetes secret.
type SecretKeySelector struct {
	Name     string `json:"name,omitempty"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

// SourceAddress says which source address a BGP session uses.
type SourceAddress string

// The source address choices.
const (
	SourceAddressUseNodeIP SourceAddress = "UseNodeIP"
	SourceAddressNone      SourceAddress = "None"
)
