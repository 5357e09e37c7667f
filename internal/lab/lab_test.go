package lab

import (
	"testing"

	"github.com/containernetworking/cni/libcni"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/cni"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "demo", "t123-4", "abcdefghijklmnop"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a_b", "abcdefghijklmnopq", "a/b", "../x"} {
		if CheckName(bad) == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
}

func TestParseServe(t *testing.T) {
	if err := ParseServe([]string{"tcp:80", "udp:53"}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"tcp", "sctp:1", "tcp:0", "udp:65536", "tcp:x"} {
		if ParseServe([]string{bad}) == nil {
			t.Errorf("ParseServe(%q) accepted", bad)
		}
	}
}

// The manifests the lab writes decode and validate, and the nodes'
// network configurations load with libcni and the plugin's own checks.
func TestManifestsDecode(t *testing.T) {
	st := &State{Name: "x", Index: 3, IPv6: true, Pool4: "10.65.0.0/16", Pool6: "fd00:65::/48",
		DatastoreURL: "http://172.31.3.254:2379",
		Nodes:        []Node{{Name: "n1", IPv4: fabricAddr4(3, 1), IPv6: fabricAddr6(3, 1), Socket: "/run/tabby/lab/x/n1.sock"}}}
	objs, err := v1.DecodeManifests("resources.yaml", []byte(resources(st)))
	if err != nil || len(objs) == 0 {
		t.Errorf("resources: %v (%d objects)\n%s", err, len(objs), resources(st))
	}
	b, err := conflist(st, st.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if l.Name != profileName || len(l.Plugins) != 1 || l.Plugins[0].Network.Type != cni.PluginType {
		t.Errorf("conflist: %s", b)
	}
	nc, err := cni.ParseNetConf(l.Plugins[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if n4, n6 := nc.IPAM.Want(); nc.NodeName != "n1" || nc.AgentSocket != st.Nodes[0].Socket || n4 != 1 || n6 != 1 {
		t.Errorf("plugin configuration: %+v", nc)
	}
	if got := fabricAddr6(3, 254).String(); got != "fd00:ffff:3::fe" {
		t.Errorf("fabricAddr6 = %s", got)
	}
}

func TestStateLookups(t *testing.T) {
	st := &State{Workloads: []Workload{{Namespace: "default", Name: "a"}, {Namespace: "prod", Name: "a"}}}
	if w, ok := st.Workload("a"); !ok || w.Namespace != "default" {
		t.Errorf("Workload(a) = %+v %v", w, ok)
	}
	if w, ok := st.Workload("prod/a"); !ok || w.Namespace != "prod" {
		t.Errorf("Workload(prod/a) = %+v %v", w, ok)
	}
	if _, ok := st.Workload("b"); ok {
		t.Error("Workload(b) found")
	}
}
