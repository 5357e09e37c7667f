// Package v1 defines Tabby's resource API, tabby.dev/v1: the resource kinds
// (endpoints, policy, IP pools, BGP and agent configuration), their
// defaults and validation, and the decoding and encoding of manifests.
//
// Field names and JSON names follow Calico's projectcalico.org/v3 API, so
// Calico manifests can be applied as they are: DecodeManifests accepts
// projectcalico.org/v3 documents of the kinds Tabby shares with Calico
// (and FelixConfiguration, as Configuration), Kubernetes
// networking.k8s.io/v1 NetworkPolicy and v1 Namespace, and converts them.
// Calico fields that Tabby does not implement are rejected by name, never
// dropped.
//
// Every kind is a struct with an embedded TypeMeta, a Metadata field and a
// Spec field, and a pointer to it implements Object. Kinds lists the user
// resources; SetDefaults, Validate and ValidateUpdate apply to any of them.
// Validation errors are *FieldError values joined with errors.Join.
//
// Where Tabby differs from Calico:
//   - IPPool ipipMode and vxlanMode accept only "Never": Tabby has no
//     overlay.
//   - BGPPeer passwords are given in password.value; secretKeyRef is
//     rejected because Tabby does not read Kubernetes secrets.
//   - Configuration (FelixConfiguration) has a small set of fields;
//     iptablesRefreshInterval becomes nftablesRefreshInterval, and
//     deviceRouteProtocol defaults to 80 and must not be 0-4.
//   - Tabby extensions: IPAMConfiguration releaseCooldownSeconds and
//     BGPConfiguration extraPrefixes.
//   - A WorkloadEndpoint's spec.node cannot change.
//   - Kubernetes NetworkPolicy peers select pods only: a namespaceSelector
//     peer also requires LabelOrchestrator == "k8s".
//   - Unknown fields are errors everywhere, and field names are matched
//     case-sensitively.
package v1
