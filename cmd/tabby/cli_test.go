package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
)

// tabby runs the CLI in-process against the test datastore and returns
// its exit status, standard output and standard error.
type tabby struct {
	t         *testing.T
	endpoints string
}

func newTabby(t *testing.T) *tabby {
	t.Helper()
	_, cfg := etcdtest.StartTestServer(t)
	// Never read or write the user's config file.
	t.Setenv("TABBY_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("TABBY_ETCD_ENDPOINTS", "")
	t.Setenv("TABBY_CONTEXT", "")
	return &tabby{t: t, endpoints: strings.Join(cfg.Endpoints, ",")}
}

func (tb *tabby) run(stdin string, args ...string) (int, string, string) {
	tb.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"tabby", "--endpoints", tb.endpoints}, args...)
	code := run(full, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its output.
func (tb *tabby) ok(stdin string, args ...string) string {
	tb.t.Helper()
	code, out, errs := tb.run(stdin, args...)
	if code != 0 {
		tb.t.Fatalf("tabby %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestApplyExamplesRoundTrip(t *testing.T) {
	tb := newTabby(t)
	out := tb.ok("", "apply", "-f", "../../examples/")
	if !strings.Contains(out, " created") || strings.Contains(out, " configured") {
		t.Errorf("first apply should only create:\n%s", out)
	}
	again := tb.ok("", "apply", "-f", "../../examples/")
	for _, line := range strings.Split(strings.TrimSpace(again), "\n") {
		if !strings.HasSuffix(line, " unchanged") {
			t.Errorf("second apply changed something: %q", line)
		}
	}

	yamlOut := tb.ok("", "get", "networkpolicy", "-A", "-o", "yaml")
	if !strings.Contains(yamlOut, "kind: NetworkPolicy") {
		t.Fatalf("get -o yaml shows no NetworkPolicy:\n%s", yamlOut)
	}
	// The output applies again, unchanged, and reads back identically.
	reapply := tb.ok(yamlOut, "apply", "-f", "-")
	for _, line := range strings.Split(strings.TrimSpace(reapply), "\n") {
		if !strings.HasSuffix(line, " unchanged") {
			t.Errorf("re-applying get -o yaml changed something: %q", line)
		}
	}
	if d := cmp.Diff(yamlOut, tb.ok("", "get", "networkpolicy", "-A", "-o", "yaml")); d != "" {
		t.Errorf("get -o yaml differs after re-apply (-before +after):\n%s", d)
	}
	jsonOut := tb.ok("", "get", "netpol", "-A", "-o", "json")
	if !strings.Contains(jsonOut, `"kind": "List"`) || !strings.Contains(jsonOut, `"kind": "NetworkPolicy"`) {
		t.Errorf("get -o json of several objects should be a List:\n%s", jsonOut)
	}
	// The JSON List applies again too, unchanged.
	for _, line := range strings.Split(strings.TrimSpace(tb.ok(jsonOut, "apply", "-f", "-")), "\n") {
		if !strings.HasSuffix(line, " unchanged") {
			t.Errorf("re-applying get -o json changed something: %q", line)
		}
	}
}

const calicoGNP = `apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.allow-web
spec:
  tier: security
  order: 10
  selector: role == 'web' && env in {'prod', 'staging'}
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'lb'
      notNets: [10.0.99.0/24]
    destination:
      ports: [80, 443, "8000:8080", http-alt]
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
  - action: Pass
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
  - action: Log
  - action: Deny
`

func TestApplyCalicoGlobalNetworkPolicyUnchanged(t *testing.T) {
	tb := newTabby(t)
	out := tb.ok(calicoGNP, "apply", "-f", "-")
	want := "tier.tabby.dev/security created\nglobalnetworkpolicy.tabby.dev/security.allow-web created\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("apply output (-want +got):\n%s", d)
	}
	table := tb.ok("", "get", "gnp")
	for _, s := range []string{"NAME", "TIER", "ORDER", "SELECTOR", "security.allow-web", "security", "10"} {
		if !strings.Contains(table, s) {
			t.Errorf("get gnp table lacks %q:\n%s", s, table)
		}
	}
	y := tb.ok("", "get", "GlobalNetworkPolicies", "security.allow-web", "-o", "yaml")
	for _, s := range []string{"apiVersion: tabby.dev/v1", "8000:8080", "http-alt", "10.0.99.0/24", "action: Pass", "action: Log", "type: 8"} {
		if !strings.Contains(y, s) {
			t.Errorf("stored policy lacks %q:\n%s", s, y)
		}
	}
}

func TestInvalidManifestWritesNothing(t *testing.T) {
	tb := newTabby(t)
	dir := t.TempDir()
	bad := `apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: fine, namespace: default}
spec:
  selector: app == "db"
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80, "80:70"]}
`
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := tb.run("", "apply", "-f", path)
	if code == 0 {
		t.Fatalf("apply of a bad manifest succeeded: %s", out)
	}
	want := "error: " + path + `: document 2 (NetworkPolicy default/web): spec.ingress[0].destination.ports[1]: "80:70": range start is after end` + "\n"
	if d := cmp.Diff(want, errs); d != "" {
		t.Errorf("stderr (-want +got):\n%s", d)
	}
	if out != "" {
		t.Errorf("stdout should be empty, got %q", out)
	}
	code, _, errs = tb.run("", "get", "networkpolicy", "fine")
	if code == 0 || !strings.Contains(errs, `networkpolicy "fine" not found in namespace "default"`) {
		t.Errorf("the valid document of a bad file was written (exit %d, %q)", code, errs)
	}
}

func TestCreateExistingWritesNothing(t *testing.T) {
	tb := newTabby(t)
	pools := `apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: a}
spec: {cidr: 10.70.0.0/16}
`
	tb.ok(pools, "create", "-f", "-")
	both := pools + `---
apiVersion: tabby.dev/v1
kind: IPPool
metadata: {name: b}
spec: {cidr: 10.71.0.0/16}
`
	code, _, errs := tb.run(both, "create", "-f", "-")
	if code == 0 || !strings.Contains(errs, "already exists") {
		t.Fatalf("create of an existing pool: exit %d, %q", code, errs)
	}
	if code, _, _ := tb.run("", "get", "ippool", "b"); code == 0 {
		t.Error("create wrote pool b although pool a existed")
	}
}

func TestOverlappingPoolRejected(t *testing.T) {
	tb := newTabby(t)
	tb.ok("apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.80.0.0/16}\n", "apply", "-f", "-")
	code, _, errs := tb.run("apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.80.128.0/18}\n", "apply", "-f", "-")
	if code == 0 || !strings.Contains(errs, "overlap") {
		t.Fatalf("overlapping pool: exit %d, %q", code, errs)
	}
}

func TestGetDeleteAndKinds(t *testing.T) {
	tb := newTabby(t)
	tb.ok("apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: dns, labels: {role: dns}}\nspec: {nets: [10.1.1.1/32]}\n", "apply", "-f", "-")
	if out := tb.ok("", "get", "globalnetworksets", "-l", `role == "dns"`, "-o", "name"); out != "globalnetworkset.tabby.dev/dns\n" {
		t.Errorf("get -l -o name = %q", out)
	}
	if out := tb.ok("", "get", "globalnetworksets", "-l", `role == "web"`, "-o", "name"); out != "" {
		t.Errorf("get -l with no match = %q", out)
	}
	code, _, errs := tb.run("", "get", "nope")
	if code == 0 || !strings.Contains(errs, `unknown kind "nope"; kinds are:`) {
		t.Errorf("unknown kind: exit %d, %q", code, errs)
	}
	if out := tb.ok("", "delete", "GlobalNetworkSet", "dns"); out != "globalnetworkset.tabby.dev/dns deleted\n" {
		t.Errorf("delete = %q", out)
	}
	if code, _, errs := tb.run("", "delete", "gns", "dns"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("second delete: exit %d, %q", code, errs)
	}
	tb.ok("", "delete", "gns", "dns", "--ignore-not-found")
}

func TestContexts(t *testing.T) {
	tb := newTabby(t)
	var out, errb bytes.Buffer
	// A context pointing at the test datastore, used without --endpoints.
	if code := run([]string{"tabby", "config", "set-context", "lab", "--endpoints", tb.endpoints, "--use"}, nil, &out, &errb); code != 0 {
		t.Fatalf("set-context: %s", errb.String())
	}
	out.Reset()
	if code := run([]string{"tabby", "config", "get-contexts"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "*         lab") {
		t.Fatalf("get-contexts: %q %q", out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"tabby", "get", "ippools"}, nil, &out, &errb); code != 0 {
		t.Fatalf("get through the context: %s", errb.String())
	}
	errb.Reset()
	if code := run([]string{"tabby", "config", "use-context", "nope"}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), `context "nope": no such context`) {
		t.Errorf("use-context nope: %q", errb.String())
	}
	// A context the file cannot hold (a certificate without its key) is
	// refused, and nothing claims it was set.
	out.Reset()
	errb.Reset()
	if code := run([]string{"tabby", "config", "set-context", "half", "--endpoints", "https://127.0.0.1:2379", "--cert", "c.pem"}, nil, &out, &errb); code == 0 || strings.Contains(out.String(), "set") {
		t.Errorf("set-context with a cert and no key: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"tabby", "config", "get-contexts"}, nil, &out, &errb); code != 0 || strings.Contains(out.String(), "half") {
		t.Errorf("get-contexts after a refused set-context: %q", out.String())
	}
}

func TestBadFlagsGiveClearErrors(t *testing.T) {
	tb := newTabby(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "ippools", "-o", "xml"}, `-o: "xml": unknown output format`},
		{[]string{"get", "wep", "-l", "a == "}, "-l: "},
		{[]string{"apply"}, "-f: must name a file"},
		{[]string{"apply", "-f", "/does/not/exist.yaml"}, "-f: stat /does/not/exist.yaml"},
	}
	for _, tc := range tests {
		code, _, errs := tb.run("", tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("tabby %s: exit %d, stderr %q, want it to contain %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
}
