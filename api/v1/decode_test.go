package v1

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// equateEmpty makes nil and empty slices and maps equal: encoding drops
// empty lists, which mean the same as absent ones.
var equateEmpty = cmpopts.EquateEmpty()

func mustDecode(t *testing.T, source, data string) []Object {
	t.Helper()
	objs, err := DecodeManifests(source, []byte(data))
	if err != nil {
		t.Fatalf("DecodeManifests(%s): %v", source, err)
	}
	return objs
}

// roundTrip encodes objs and decodes them again.
func roundTrip(t *testing.T, objs []Object) []Object {
	t.Helper()
	y, err := EncodeYAML(objs...)
	if err != nil {
		t.Fatalf("EncodeYAML: %v", err)
	}
	again, err := DecodeManifests("encoded", y)
	if err != nil {
		t.Fatalf("decoding the encoded objects: %v\n%s", err, y)
	}
	return again
}

func TestRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/all-fields.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := mustDecode(t, "all-fields.yaml", string(data))
	if len(objs) != 20 {
		t.Fatalf("decoded %d objects, want 20", len(objs))
	}
	seen := map[string]bool{}
	for _, o := range objs {
		seen[o.GetTypeMeta().Kind] = true
	}
	for _, k := range Kinds() {
		if !seen[k.Kind] {
			t.Errorf("testdata/all-fields.yaml has no %s", k.Kind)
		}
	}
	if diff := cmp.Diff(objs, roundTrip(t, objs), equateEmpty); diff != "" {
		t.Errorf("round trip changed the objects (-before +after):\n%s", diff)
	}
	// Each object also round-trips through JSON.
	for _, o := range objs {
		j, err := ToJSON(o)
		if err != nil {
			t.Fatalf("ToJSON: %v", err)
		}
		back := mustDecode(t, "json", string(j))
		if diff := cmp.Diff([]Object{o}, back, equateEmpty); diff != "" {
			t.Errorf("JSON round trip of %s changed it:\n%s", o.GetObjectMeta().Name, diff)
		}
	}
}

func TestToYAMLSetsTypeMeta(t *testing.T) {
	pool := &IPPool{Metadata: ObjectMeta{Name: "p"}, Spec: IPPoolSpec{CIDR: "10.0.0.0/16"}}
	y, err := ToYAML(pool)
	if err != nil {
		t.Fatal(err)
	}
	want := "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0/16\n"
	if string(y) != want {
		t.Errorf("ToYAML =\n%s\nwant\n%s", y, want)
	}
	if pool.APIVersion != "" || pool.Kind != "" {
		t.Errorf("ToYAML modified its argument: %+v", pool.TypeMeta)
	}
}

func TestDecodeDefaults(t *testing.T) {
	objs := mustDecode(t, "d.yaml", `
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: p}
spec:
  egress: [{action: Allow}]
---
apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd00::/48"}
---
apiVersion: tabby.dev/v1
kind: BGPPeer
metadata: {name: peer}
spec: {peerIP: 192.0.2.1, asNumber: 65001}
---
apiVersion: tabby.dev/v1
kind: IPAMConfiguration
metadata: {name: default}
spec: {strictAffinity: true}
---
apiVersion: tabby.dev/v1
kind: Tier
metadata: {name: t1}
spec: {}
`)
	want := []Object{
		&NetworkPolicy{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "NetworkPolicy"},
			Metadata: ObjectMeta{Name: "p", Namespace: "default"},
			Spec: NetworkPolicySpec{
				Tier:   "default",
				Egress: []Rule{{Action: Allow}},
				Types:  []PolicyType{PolicyTypeEgress},
			},
		},
		&IPPool{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "IPPool"},
			Metadata: ObjectMeta{Name: "v6"},
			Spec: IPPoolSpec{
				CIDR: "fd00::/48", BlockSize: 122, NodeSelector: "all()",
				AllowedUses: []IPPoolAllowedUse{IPPoolAllowedUseWorkload},
			},
		},
		&BGPPeer{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "BGPPeer"},
			Metadata: ObjectMeta{Name: "peer"},
			Spec:     BGPPeerSpec{PeerIP: "192.0.2.1", ASNumber: 65001, SourceAddress: SourceAddressUseNodeIP},
		},
		&IPAMConfiguration{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "IPAMConfiguration"},
			Metadata: ObjectMeta{Name: "default"},
			Spec:     IPAMConfigurationSpec{StrictAffinity: true, AutoAllocateBlocks: boolPtr(true)},
		},
		&Tier{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "Tier"},
			Metadata: ObjectMeta{Name: "t1"},
			Spec:     TierSpec{DefaultAction: Deny},
		},
	}
	if diff := cmp.Diff(want, objs); diff != "" {
		t.Errorf("decoded objects (-want +got):\n%s", diff)
	}
}

func TestDefaultPolicyTypes(t *testing.T) {
	rule := []Rule{{Action: Allow}}
	for _, tc := range []struct {
		ingress, egress []Rule
		types, want     []PolicyType
	}{
		{nil, nil, nil, []PolicyType{PolicyTypeIngress}},
		{rule, nil, nil, []PolicyType{PolicyTypeIngress}},
		{nil, rule, nil, []PolicyType{PolicyTypeEgress}},
		{rule, rule, nil, []PolicyType{PolicyTypeIngress, PolicyTypeEgress}},
		{rule, rule, []PolicyType{PolicyTypeEgress}, []PolicyType{PolicyTypeEgress}},
	} {
		gnp := &GlobalNetworkPolicy{Spec: GlobalNetworkPolicySpec{Ingress: tc.ingress, Egress: tc.egress, Types: tc.types}}
		SetDefaults(gnp)
		if diff := cmp.Diff(tc.want, gnp.Spec.Types); diff != "" {
			t.Errorf("ingress %d, egress %d, types %v: (-want +got)\n%s", len(tc.ingress), len(tc.egress), tc.types, diff)
		}
	}
}

func TestDecodeForms(t *testing.T) {
	pool := func(name, cidr string) string {
		return `{"apiVersion": "tabby.dev/v1", "kind": "IPPool", "metadata": {"name": "` + name + `"}, "spec": {"cidr": "` + cidr + `"}}`
	}
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"json object", pool("a", "10.1.0.0/16"), []string{"a"}},
		{"json array", "[" + pool("a", "10.1.0.0/16") + ",\n" + pool("b", "10.2.0.0/16") + "]", []string{"a", "b"}},
		{"list", "apiVersion: v1\nkind: List\nitems:\n- " + pool("a", "10.1.0.0/16") + "\n- " + pool("b", "10.2.0.0/16"), []string{"a", "b"}},
		{"calicoctl list", "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nmetadata: {resourceVersion: '5'}\nitems:\n- " + pool("a", "10.1.0.0/16"), []string{"a"}},
		{"empty list", "apiVersion: v1\nkind: List\nitems: []\n", nil},
		{"leading separator and comments", "---\n# only a comment\n---\n" + pool("a", "10.1.0.0/16") + "\n---\n\n--- # trailing\n", []string{"a"}},
		{"empty stream", "", nil},
		{"crlf", strings.ReplaceAll("apiVersion: tabby.dev/v1\nkind: Tier\nmetadata:\n  name: t\n---\napiVersion: tabby.dev/v1\nkind: Tier\nmetadata:\n  name: u\n", "\n", "\r\n"), []string{"t", "u"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustDecode(t, "x", tc.data)
			var names []string
			for _, o := range objs {
				names = append(names, o.GetObjectMeta().Name)
			}
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOneBadDocument(t *testing.T) {
	data := `
apiVersion: tabby.dev/v1
kind: Namespace
metadata: {name: web}
---
# document 2 is empty
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "80:70"]
---
apiVersion: tabby.dev/v1
kind: Tier
metadata: {name: ok}
`
	objs, err := DecodeManifests("policy.yaml", []byte(data))
	if objs != nil {
		t.Errorf("DecodeManifests returned %d objects with an error", len(objs))
	}
	want := `policy.yaml: document 3 (NetworkPolicy default/web): spec.ingress[0].destination.ports[1]: "80:70": range start is after end`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
	var de *DocumentError
	var fe *FieldError
	if !errors.As(err, &de) || de.Document != 3 || !errors.As(err, &fe) || fe.Path != "spec.ingress[0].destination.ports[1]" {
		t.Errorf("error does not unwrap to the DocumentError and FieldError: %#v", err)
	}
}

func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no files in ../../examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs := mustDecode(t, f, string(data))
			if len(objs) == 0 {
				t.Errorf("%s has no objects", f)
			}
			if diff := cmp.Diff(objs, roundTrip(t, objs), equateEmpty); diff != "" {
				t.Errorf("round trip changed the objects (-before +after):\n%s", diff)
			}
		})
	}
}

// TestRoundTripTrickyStrings checks that strings YAML would read as
// something else survive encoding.
func TestRoundTripTrickyStrings(t *testing.T) {
	var annotations = map[string]string{}
	for i, s := range []string{
		"yes", "no", "on", "off", "y", "n", "true", "null", "~", "", " ", "123", "0x10", "1e3", ".inf", "-.nan",
		"0777", "1:20", "12:30:00", "2024-01-01", "a: b", "- x", "# c", "---", "...", "'q'", `"d"`, "{a}", "[b]",
		"&anchor", "*alias", "!tag", "%dir", "@at", "`tick", "|", ">", " lead", "trail ", "tab\there", "nl\nin",
		"---\nx", "\x00\x01", "ünïcödé", "😀", "\u2028", "\r\n", "\\",
	} {
		annotations["k"+strings.Repeat("x", i)] = s
	}
	objs := []Object{&Profile{Metadata: ObjectMeta{Name: "p", Annotations: annotations}}}
	SetDefaults(objs[0])
	if diff := cmp.Diff(objs, roundTrip(t, objs), equateEmpty); diff != "" {
		t.Errorf("round trip changed the objects (-before +after):\n%s", diff)
	}
}
