// Package nft renders a node's compiled policy (a policy.Ruleset) into
// nftables, in one table that Tabby owns whole (`table inet tabby` by
// default) in one network namespace, and keeps the kernel equal to it.
//
// # Layout
//
// Base chains (all policy accept; Tabby's verdicts are explicit drops):
//
//	raw-prerouting   prerouting, priority raw: anti-spoofing of workload
//	                 interfaces (iifname . ip saddr @spoof-v4, ...)
//	forward          conntrack, then from-wl (iifname "tabby*") and
//	                 to-wl (oifname "tabby*"), or the host endpoints'
//	                 forward chains (hep-fwd-in, hep-fwd-out)
//	input            conntrack, workload to host (wl-to-host), host
//	                 endpoints (hep-in)
//	output           conntrack, host to workloads (accepted), host
//	                 endpoints (hep-out)
//	nat-postrouting  masquerade from natOutgoing pools to outside all pools
//
// Dispatch chains look the interface up in a verdict map
// (`iifname vmap @from-wl`) that jumps (goto) to the endpoint's chain; a
// workload interface missing from the map is dropped, so a new workload
// is isolated until its policy is in. Each endpoint has one chain per
// direction ("tw-IFACE" to a workload, "fw-IFACE" from it; "hi-", "ho-",
// "hfi-", "hfo-" for host endpoints), each policy one per direction
// ("pi-np/NS/NAME", "po-gnp/NAME"), each profile one per direction
// ("ri-NAME", "ro-NAME"); names that are too long or not plain are hashed.
// Address sets become hash sets of addresses ("s-ID-v4"), or interval sets
// when they hold networks ("s-ID-v4net"); named-port sets become
// concatenated sets (address . protocol . port).
//
// Verdicts: a policy or profile chain allows with `meta mark set meta
// mark | ACCEPT return`, denies with `drop` and passes (skips the rest of
// its tier) with `meta mark set meta mark | PASS return`. An endpoint
// chain jumps to its policies tier by tier, guards each jump with "PASS
// not set", returns as soon as ACCEPT is set, ends each tier with its
// default action and ends with the chain's EndAction. So an endpoint chain
// returns when the packet is allowed and drops it otherwise, and the base
// chain goes on: a packet between two local workloads meets the sender's
// egress and the receiver's ingress policy in the same forward hook.
//
// # Applying
//
// [Renderer.Set] records the desired Ruleset; [Renderer.Apply] renders it
// (memoised per object: Ruleset values are immutable, so an unchanged
// pointer renders to the same specs) and diffs it against its record of
// the kernel: new chains and sets, element additions and deletions,
// and per chain the smallest rule edit (rules on a longest common
// subsequence keep their handles; the rest are replaced, deleted or
// inserted), all in one nftables transaction. Every rule carries, in its
// user data, a hash of its desired form, which is its identity. A second
// Apply with the same state writes nothing. [Renderer.Resync] reads the
// whole table from the kernel instead, repairs every difference, deletes
// strays and counts the repairs; it never touches what is already right,
// so a restarted agent takes over the table without interrupting traffic.
//
// See docs/dataplane.md for the reasoning.
package nft
