package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// The orchestrator of endpoints that Kubernetes did not ask for.
const orchestratorCNI = "cni"

// Annotations the plugin sets on the WorkloadEndpoints it writes.
const (
	// AnnotationNetwork names the CNI network (NetConf.Name) of the
	// attachment; GC uses it to find the network's endpoints.
	AnnotationNetwork = "cni.tabby.dev/network"
)

// attachment is one container interface of one network on this node: who
// asked for it and what Tabby calls it.
type attachment struct {
	network     string
	node        string
	containerID string
	ifName      string
	netns       string

	orchestrator string // v1.OrchestratorKubernetes or orchestratorCNI
	namespace    string // the WorkloadEndpoint's namespace
	pod          string // Kubernetes pod name, if any
	workload     string // the pod, or the container ID
	name         string // the WorkloadEndpoint's name
}

// newAttachment identifies the attachment from the CNI arguments.
// Kubernetes (K8S_POD_NAME in CNI_ARGS) gets orchestrator k8s and the
// pod's namespace; anything else orchestrator cni in namespace default.
func newAttachment(network, node, containerID, ifName, netns, cniArgs string) attachment {
	a := attachment{network: network, node: node, containerID: containerID, ifName: ifName, netns: netns}
	kv := parseCNIArgs(cniArgs)
	if pod := kv["K8S_POD_NAME"]; pod != "" {
		a.orchestrator, a.pod, a.workload = v1.OrchestratorKubernetes, pod, pod
		a.namespace = kv["K8S_POD_NAMESPACE"]
	} else {
		a.orchestrator, a.workload = orchestratorCNI, containerID
	}
	if a.namespace == "" {
		a.namespace = v1.DefaultNamespace
	}
	a.name = endpointName(node, a.orchestrator, a.workload, ifName)
	return a
}

// handle is the IPAM handle of the attachment.
func (a attachment) handle() string { return HandleID(a.network, a.containerID, a.ifName) }

// endpointID is what links.InterfaceName hashes: "<namespace>/<name>".
func (a attachment) endpointID() string { return a.namespace + "/" + a.name }

// HandleID is the IPAM handle of an attachment:
// "<network>.<containerID>.<ifname>".
func HandleID(network, containerID, ifName string) string {
	return network + "." + containerID + "." + ifName
}

// parseCNIArgs splits CNI_ARGS ("K1=V1;K2=V2"). Pairs without '=' are
// ignored, as are unknown keys: runtimes pass keys for other plugins.
func parseCNIArgs(s string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(pair, "=")
		if ok && k != "" {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

var subdomainRegexp = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// endpointName names the WorkloadEndpoint as Calico does:
// "<node>-<orchestrator>-<workload>-<ifname>", each part with '-' doubled,
// so that distinct attachments never share a name. When that is not a
// valid name (upper case, '_', too long) it is
// "<orchestrator>-<32 hex digits of a SHA-256 of the parts>".
func endpointName(node, orchestrator, workload, ifName string) string {
	parts := []string{node, orchestrator, workload, ifName}
	esc := make([]string, len(parts))
	for i, p := range parts {
		esc[i] = strings.ReplaceAll(p, "-", "--")
	}
	name := strings.Join(esc, "-")
	if len(name) <= 253 && subdomainRegexp.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return orchestrator + "-" + hex.EncodeToString(sum[:16])
}

// buildEndpoint returns the WorkloadEndpoint of an attachment, defaulted
// and validated.
func buildEndpoint(a attachment, labels []Label, hostIf string, wlMAC net.HardwareAddr, addrs []netip.Addr) (*v1.WorkloadEndpoint, error) {
	w := &v1.WorkloadEndpoint{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: "WorkloadEndpoint"},
		Metadata: v1.ObjectMeta{
			Name:        a.name,
			Namespace:   a.namespace,
			Annotations: map[string]string{AnnotationNetwork: a.network},
		},
		Spec: v1.WorkloadEndpointSpec{
			Orchestrator:  a.orchestrator,
			Workload:      a.workload,
			Node:          a.node,
			ContainerID:   a.containerID,
			Pod:           a.pod,
			Endpoint:      a.ifName,
			InterfaceName: hostIf,
		},
	}
	if len(labels) > 0 {
		w.Metadata.Labels = make(map[string]string, len(labels))
		for _, l := range labels {
			w.Metadata.Labels[l.Key] = l.Value
		}
	}
	if wlMAC != nil {
		w.Spec.MAC = wlMAC.String()
	}
	for _, ad := range addrs {
		w.Spec.IPNetworks = append(w.Spec.IPNetworks, netip.PrefixFrom(ad, ad.BitLen()).String())
	}
	// Kubernetes pods get the profile kns.<namespace> from the policy
	// engine; other workloads get the profile named after the network, as
	// in Calico.
	if a.orchestrator != v1.OrchestratorKubernetes {
		if len(a.network) > 253 || !subdomainRegexp.MatchString(a.network) {
			return nil, fmt.Errorf("network name %q is not a valid profile name (lower-case letters, digits, '-' and '.'): "+
				"workloads outside Kubernetes get the profile named after their network; rename the network", a.network)
		}
		w.Spec.Profiles = []string{a.network}
	}
	v1.SetDefaults(w)
	if err := v1.Validate(w); err != nil {
		return nil, fmt.Errorf("WorkloadEndpoint %s/%s: %w", a.namespace, a.name, err)
	}
	return w, nil
}
