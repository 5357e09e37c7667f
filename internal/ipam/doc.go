// Package ipam allocates workload addresses from IP pools, cluster-wide
// unique, fast, and close to the workload's host so that routes
// aggregate. It is the datastore-backed half of IPAM; package
// internal/ipam/block is the pure core (one block's addresses and their
// reuse order).
//
// Pools are cut into blocks (/26 and /122 by default). A node claims a
// block through an affinity, first pending, then confirmed together with
// the block's creation in one transaction, and allocates inside its
// affine blocks. When it can claim no more blocks it borrows from other
// nodes' blocks, unless the IPAM configuration sets strictAffinity. Every
// address belongs to a handle (one per workload attachment), and release
// goes by handle or by address.
//
// IPAM keeps its own objects in the Store as JSON, outside the api/v1
// resources: IPAMBlock (the block.Block), BlockAffinity (namespace: the
// node) and IPAMHandle. Every write is a compare-and-swap on the revision
// read, with bounded retries; there is no cluster-wide lock. GC reclaims
// what crashed writers and deleted workloads leave behind; Check reports
// inconsistencies. docs/ipam.md describes the data model, the claim
// protocol and what a crash at each step leaves behind.
package ipam
