// Package bgp is Tabby's BGP routing layer: an embedded GoBGP speaker per
// node that advertises the node's address blocks and learns the other
// nodes' (and top-of-rack routers') routes for the kernel.
//
// The parts:
//
//   - [Peers] computes, purely, which sessions a node has: the
//     node-to-node mesh, route reflectors and their clients, and explicit
//     BGPPeers (global, per node, by node selector, to a peer IP or to the
//     nodes a peer selector selects).
//   - [Speaker] wraps the GoBGP server. Desired state goes in with
//     [Speaker.SetPeers] and [Speaker.SetAdvertised]; [Speaker.Apply]
//     reconciles GoBGP with it (add, re-create and delete peers; add,
//     update and withdraw paths). Every session carries IPv4 and IPv6
//     unicast; IPv6 routes carry the node's IPv6 address as next hop, also
//     over IPv4 sessions.
//   - [Speaker.Learned] returns the best paths learned from peers, with
//     all equal-cost next hops (ECMP), after the safety filter
//     ([FilterLearned]): a learned route never overlaps a connected subnet,
//     contains a local address, or equals a prefix the node advertises.
//   - [Installer] puts the learned routes into the kernel through the
//     routes manager (internal/dataplane/routes), with Tabby's route
//     protocol, whenever they change.
//   - [Speaker.Status] and [Speaker.Collector] report sessions and route
//     counts for `tabby node status` and Prometheus.
//   - Subpackage nodeaddr autodetects the node's address.
//
// Graceful restart (RFC 4724) keeps a restarting agent's routes at its
// peers, and keeps the routes of restarting peers here, for the restart
// time. docs/bgp.md describes the topologies, what is advertised, route
// priority for migrated endpoints, graceful restart and the safety filter.
package bgp
