// Package policy is Tabby's policy engine: it turns the cluster's resources
// (tiers, policies, profiles, endpoints, network sets, namespaces and the
// agent configuration) into the compiled ruleset that one node must
// enforce, and keeps it up to date incrementally.
//
// The engine is pure: no kernel, no clock, no randomness and no datastore
// I/O. It is fed datastore objects with [Engine.OnUpdate] and
// [Engine.OnDelete], and [Engine.Flush] returns the smallest [Delta] since
// the previous flush: endpoint chains, compiled policies and profiles, and
// IP set members. [Engine.Ruleset] returns the complete, deterministic
// [Ruleset]; the nftables renderer (internal/dataplane/nft) renders it.
//
// The semantics are Calico's (see docs/policy.md): policies are grouped in
// ordered tiers; for each endpoint and direction the first matching rule of
// the first tier that selects the endpoint decides (Allow, Deny, Pass to the
// next tier, Log and go on); a tier that selects the endpoint but decides
// nothing applies its default action; after the tiers come the endpoint's
// profiles, and a packet that nothing allowed is dropped. A flow is checked
// twice: egress on the sending node and ingress on the receiving node.
//
// [Evaluate] is the reference evaluator over the compiled form: given a
// ruleset, an endpoint and a packet it returns the verdict and the tier,
// policy and rule that decided it. [EvaluateFlow] checks a flow across two
// nodes' rulesets, and [Cluster] compiles and traces flows for whole sets of
// objects (tabby policy trace).
package policy
