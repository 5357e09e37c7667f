package v1

import "github.com/tabbynet/tabby/internal/selector"

// Implicit labels. Tabby adds them to the labels that selectors see; they
// are never written in metadata.labels.
const (
	// LabelNamespace is carried by every namespaced endpoint and network
	// set, with the name of its namespace as value. Selectors use it
	// through global() and namespace selectors; setting it in
	// metadata.labels is an error.
	LabelNamespace = selector.NamespaceLabel
	// LabelOrchestrator is carried by every workload endpoint, with its
	// spec.orchestrator as value (when set). Policies converted from
	// Kubernetes NetworkPolicy select pods with
	// LabelOrchestrator == OrchestratorKubernetes.
	LabelOrchestrator = "tabby.dev/orchestrator"
	// OrchestratorKubernetes is the orchestrator of Kubernetes pods.
	OrchestratorKubernetes = "k8s"
)

// AnnotationK8sNetworkPolicy is set on a NetworkPolicy converted from a
// Kubernetes NetworkPolicy, with the Kubernetes policy's name as value.
const AnnotationK8sNetworkPolicy = "tabby.dev/k8s-networkpolicy"

// K8sNetworkPolicyPrefix starts the name of a NetworkPolicy converted from
// a Kubernetes NetworkPolicy (Calico's "knp.default." prefix).
const K8sNetworkPolicyPrefix = "knp.default."
