package cni

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/tabbynet/tabby/api/v1"
)

func TestNewAttachment(t *testing.T) {
	for _, tc := range []struct {
		args string
		want attachment
	}{
		{"", attachment{orchestrator: "cni", namespace: "default", workload: "c-1", name: "node--1-cni-c--1-eth0"}},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c-1;X",
			attachment{orchestrator: "k8s", namespace: "shop", pod: "web-0", workload: "web-0", name: "node--1-k8s-web--0-eth0"}},
		{"K8S_POD_NAME=web", attachment{orchestrator: "k8s", namespace: "default", pod: "web", workload: "web", name: "node--1-k8s-web-eth0"}},
	} {
		got := newAttachment("net", "node-1", "c-1", "eth0", "/run/netns/x", tc.args)
		tc.want.network, tc.want.node, tc.want.containerID, tc.want.ifName, tc.want.netns = "net", "node-1", "c-1", "eth0", "/run/netns/x"
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(attachment{})); diff != "" {
			t.Errorf("newAttachment(%q) (-want +got):\n%s", tc.args, diff)
		}
	}
	if h := HandleID("net", "c-1", "eth0"); h != "net.c-1.eth0" {
		t.Errorf("HandleID = %q", h)
	}
}

func TestEndpointName(t *testing.T) {
	// Distinct attachments never share a name.
	seen := map[string][4]string{}
	for _, parts := range [][4]string{
		{"a-b", "cni", "c", "eth0"},
		{"a", "cni", "b-c", "eth0"},
		{"a", "cni", "b", "c-eth0"},
		{"a.b", "k8s", "pod", "eth0"},
		{"a", "k8s", "b.pod", "eth0"},
		{"node", "cni", "ABC", "eth0"},
		{"node", "cni", "abc", "eth0"},
		{"node", "cni", "c_1", "eth0"},
		{"node", "cni", strings.Repeat("x", 300), "eth0"},
	} {
		n := endpointName(parts[0], parts[1], parts[2], parts[3])
		if prev, dup := seen[n]; dup {
			t.Errorf("%v and %v both named %q", prev, parts, n)
		}
		seen[n] = parts
		if len(n) > 253 || !subdomainRegexp.MatchString(n) {
			t.Errorf("endpointName%v = %q: not a valid name", parts, n)
		}
	}
}

func TestBuildEndpoint(t *testing.T) {
	a := newAttachment("net", "node-1", "c1", "eth0", "/run/netns/x", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0")
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	addrs := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}
	w, err := buildEndpoint(a, []Label{{"app", "web"}}, "tabby0123456789", mac, addrs)
	if err != nil {
		t.Fatal(err)
	}
	want := v1.WorkloadEndpointSpec{
		Orchestrator: "k8s", Workload: "web-0", Node: "node-1", ContainerID: "c1", Pod: "web-0", Endpoint: "eth0",
		IPNetworks: []string{"10.0.0.1/32", "fd00::1/128"}, InterfaceName: "tabby0123456789", MAC: "02:00:00:00:00:01",
	}
	if diff := cmp.Diff(want, w.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if w.Metadata.Namespace != "shop" || w.Metadata.Labels["app"] != "web" || w.Metadata.Annotations[AnnotationNetwork] != "net" {
		t.Errorf("metadata: %+v", w.Metadata)
	}
	// Other workloads get the network's profile; bad labels are errors.
	a = newAttachment("net", "node-1", "c1", "eth0", "/x", "")
	if w, err := buildEndpoint(a, nil, "tabby0123456789", nil, addrs); err != nil || !cmp.Equal(w.Spec.Profiles, []string{"net"}) {
		t.Errorf("profiles %v, %v", w, err)
	}
	if _, err := buildEndpoint(a, []Label{{"bad key!", "x"}}, "tabby0123456789", nil, addrs); err == nil || !strings.Contains(err.Error(), "metadata.labels") {
		t.Errorf("bad label: %v", err)
	}
	a = newAttachment("Net_1", "node-1", "c1", "eth0", "/x", "")
	if _, err := buildEndpoint(a, nil, "tabby0123456789", nil, addrs); err == nil || !strings.Contains(err.Error(), "profile") {
		t.Errorf("bad network name: %v", err)
	}
}
