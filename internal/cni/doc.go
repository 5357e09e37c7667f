// Package cni is Tabby's CNI plugin (type "tabby") and IPAM plugin
// ("tabby-ipam"): the tabby binary runs as the former when CNI_COMMAND is
// set and as the latter when it is invoked under the name tabby-ipam.
//
// The plugin has the shape of the reference ptp plugin: the commands are
// skel.CNIFuncs, DEL is idempotent (a missing namespace, link, endpoint or
// address counts as done), and all network namespace work goes through one
// helper, inNetNS, with netlink and sysctls through internal/dataplane/nl.
//
// ADD, for one container and interface:
//
//  1. takes addresses from Tabby's IPAM in-process (ipam.type
//     "tabby-ipam", serialized per node by a lock file) or from a delegated
//     IPAM plugin such as host-local;
//  2. creates the veth pair: the host side is links.InterfaceName(prefix,
//     "<namespace>/<endpoint>") with MAC ee:ee:ee:ee:ee:ee, the workload
//     side is CNI_IFNAME with the /32 and /128 addresses, a link-scope route
//     to 169.254.1.1, a default route through it, permanent neighbour
//     entries for the gateways and an IPv6 default route through the host
//     side's link-local address;
//  3. writes the WorkloadEndpoint;
//  4. waits until the node's agent reports the endpoint's policy
//     programmed at (at least) the revision it wrote, so that policy is in
//     force the moment ADD returns.
//
// A failure at any step undoes the earlier ones, and ADD can be run again
// for the same container. DEL, CHECK, GC and STATUS are described in
// docs/cni.md, with every configuration field.
package cni
