package lab

import (
	"net/netip"
	"testing"

	v1 "github.com/tabbynet/tabby/api/v1"
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

// The manifests the lab writes decode and validate.
func TestManifestsDecode(t *testing.T) {
	st := &State{Name: "x", Index: 3, IPv6: true, Pool4: "10.65.0.0/16", Pool6: "fd00:65::/48",
		Nodes: []Node{{Name: "n1", IPv4: fabricAddr4(3, 1), IPv6: fabricAddr6(3, 1)}}}
	w := Workload{Namespace: "default", Name: "web", Node: "n1", Interface: "tabby0123456789",
		IPv4: netip.MustParseAddr("10.65.0.1"), IPv6: netip.MustParseAddr("fd00:65::1"),
		Labels: map[string]string{"app": "web", "tabby.dev/x": "y"}}
	for what, m := range map[string]string{"resources": resources(st), "endpoint": wepManifest(w)} {
		objs, err := v1.DecodeManifests(what+".yaml", []byte(m))
		if err != nil {
			t.Errorf("%s: %v\n%s", what, err, m)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", what)
		}
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
