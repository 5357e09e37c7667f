package v1

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidateUpdate(t *testing.T) {
	pool := func(name, cidr string, blockSize int) *IPPool {
		p := &IPPool{Metadata: ObjectMeta{Name: name}, Spec: IPPoolSpec{CIDR: cidr, BlockSize: blockSize}}
		SetDefaults(p)
		return p
	}
	wep := func(node string) *WorkloadEndpoint {
		w := &WorkloadEndpoint{Metadata: ObjectMeta{Name: "w"}, Spec: WorkloadEndpointSpec{Node: node}}
		SetDefaults(w)
		return w
	}
	for _, tc := range []struct {
		name     string
		old, upd Object
		want     string
	}{
		{"pool unchanged but disabled", pool("p", "10.0.0.0/16", 0), func() Object {
			p := pool("p", "10.0.0.0/16", 26)
			p.Spec.Disabled = true
			return p
		}(), ""},
		{"pool cidr", pool("p", "10.0.0.0/16", 0), pool("p", "10.1.0.0/16", 0),
			`spec.cidr: "10.1.0.0/16": field is immutable: it was "10.0.0.0/16"`},
		{"pool block size", pool("p", "10.0.0.0/16", 0), pool("p", "10.0.0.0/16", 28),
			`spec.blockSize: "28": field is immutable: it was "26"`},
		{"name", pool("p", "10.0.0.0/16", 0), pool("q", "10.0.0.0/16", 0),
			`metadata.name: "q": field is immutable: it was "p"`},
		{"endpoint node", wep("n1"), wep("n2"),
			`spec.node: "n2": field is immutable: it was "n1"`},
		{"invalid update", wep("n1"), wep(""),
			"spec.node: node is required\n" + `spec.node: field is immutable: it was "n1"`},
		{"kind", wep("n1"), pool("w", "10.0.0.0/16", 0),
			`updating *v1.WorkloadEndpoint with *v1.IPPool: the kind cannot change`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateUpdate(tc.old, tc.upd)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("ValidateUpdate = %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCheckPoolOverlap(t *testing.T) {
	pool := func(name, cidr string) *IPPool {
		return &IPPool{Metadata: ObjectMeta{Name: name}, Spec: IPPoolSpec{CIDR: cidr}}
	}
	if err := CheckPoolOverlap([]*IPPool{pool("a", "10.0.0.0/16"), pool("b", "10.1.0.0/16"), pool("c", "fd00::/48"), pool("bad", "x")}); err != nil {
		t.Errorf("disjoint pools: %v", err)
	}
	err := CheckPoolOverlap([]*IPPool{pool("a", "10.0.0.0/16"), pool("b", "10.0.128.0/17"), pool("c", "fd00::/48"), pool("d", "10.0.0.0/8"), pool("e", "fd00:0:0:1::/64")})
	want := `IPPool "a" (10.0.0.0/16) overlaps IPPool "b" (10.0.128.0/17)` + "\n" +
		`IPPool "a" (10.0.0.0/16) overlaps IPPool "d" (10.0.0.0/8)` + "\n" +
		`IPPool "b" (10.0.128.0/17) overlaps IPPool "d" (10.0.0.0/8)` + "\n" +
		`IPPool "c" (fd00::/48) overlaps IPPool "e" (fd00:0:0:1::/64)`
	if err == nil || err.Error() != want {
		t.Errorf("CheckPoolOverlap = %v\nwant %s", err, want)
	}
}

func TestConfigurationDefaultsAndMerge(t *testing.T) {
	objs := mustDecode(t, "config.yaml", `
apiVersion: tabby.dev/v1
kind: Configuration
metadata: {name: default}
spec:
  prometheusMetricsEnabled: true
  failsafeOutboundHostPorts: []
---
apiVersion: tabby.dev/v1
kind: Configuration
metadata: {name: node.n1}
spec:
  prometheusMetricsEnabled: false
  routeRefreshInterval: 10s
---
apiVersion: tabby.dev/v1
kind: BGPConfiguration
metadata: {name: default}
spec:
  extraPrefixes: [192.0.2.0/24]
---
apiVersion: tabby.dev/v1
kind: BGPConfiguration
metadata: {name: node.n1}
spec:
  listenPort: 1179
  extraPrefixes: [198.51.100.0/24]
`)
	global, node := objs[0].(*Configuration), objs[1].(*Configuration)
	// SetDefaults filled the global configuration only.
	want := DefaultConfigurationSpec()
	want.PrometheusMetricsEnabled = ptr(true)
	want.FailsafeOutboundHostPorts = &[]ProtoPort{}
	if diff := cmp.Diff(want, global.Spec); diff != "" {
		t.Errorf("default Configuration (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ConfigurationSpec{PrometheusMetricsEnabled: ptr(false), RouteRefreshInterval: &Duration{10 * time.Second}}, node.Spec); diff != "" {
		t.Errorf("node Configuration (-want +got):\n%s", diff)
	}
	eff := EffectiveConfiguration(global, node)
	want.PrometheusMetricsEnabled = ptr(false)
	want.RouteRefreshInterval = &Duration{10 * time.Second}
	if diff := cmp.Diff(want, eff); diff != "" {
		t.Errorf("EffectiveConfiguration (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(DefaultConfigurationSpec(), EffectiveConfiguration(nil, nil)); diff != "" {
		t.Errorf("EffectiveConfiguration(nil, nil) (-want +got):\n%s", diff)
	}

	bg, bn := objs[2].(*BGPConfiguration), objs[3].(*BGPConfiguration)
	asn := DefaultASNumber
	wantBGP := BGPConfigurationSpec{
		LogSeverityScreen: "Info", NodeToNodeMeshEnabled: ptr(true), ASNumber: &asn, ListenPort: 179,
		ExtraPrefixes: []string{"192.0.2.0/24"},
	}
	if diff := cmp.Diff(wantBGP, bg.Spec); diff != "" {
		t.Errorf("default BGPConfiguration (-want +got):\n%s", diff)
	}
	wantBGP.ListenPort = 1179
	wantBGP.ExtraPrefixes = []string{"192.0.2.0/24", "198.51.100.0/24"}
	if diff := cmp.Diff(wantBGP, EffectiveBGPConfiguration(bg, bn)); diff != "" {
		t.Errorf("EffectiveBGPConfiguration (-want +got):\n%s", diff)
	}
}
