package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const traceManifests = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: shop}
---
apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: node-1, orchestrator: k8s, interfaceName: tabbyweb, ipNetworks: [10.9.0.1/32]}
---
apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec:
  node: node-2
  orchestrator: k8s
  interfaceName: tabbydb
  ipNetworks: [10.9.0.2/32]
  ports: [{name: pg, protocol: TCP, port: 5432}]
---
apiVersion: tabby.dev/v1
kind: HostEndpoint
metadata: {name: node-2-eth0, labels: {host: "true"}}
spec: {node: node-2, interfaceName: eth0, expectedIPs: [192.168.7.2]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: pg}]
`

// traceOutput is the part of the JSON output the test checks.
type traceOutput struct {
	Verdict string `json:"verdict"`
	From    struct {
		Endpoint string `json:"endpoint"`
		Node     string `json:"node"`
		IP       string `json:"ip"`
	} `json:"from"`
	Egress  *traceDirection `json:"egress"`
	Ingress *traceDirection `json:"ingress"`
}

type traceDirection struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Rule    *struct {
		Tier      string `json:"tier"`
		Policy    string `json:"policy"`
		Profile   string `json:"profile"`
		Direction string `json:"direction"`
		Index     int    `json:"index"`
	} `json:"rule"`
	Tier string `json:"tier"`
}

func TestPolicyTrace(t *testing.T) {
	tb := newTabby(t)
	tb.ok(traceManifests, "apply", "-f", "-")

	t.Run("text", func(t *testing.T) {
		out := tb.ok("", "policy", "trace", "--from", "shop/web", "--to", "shop/db", "--port", "5432")
		for _, want := range []string{
			"from: wep:shop/web 10.9.0.1 on node node-1",
			"egress at wep:shop/web (node node-1):",
			"profile kns.shop: rule 0 matched: Allow",
			"tier default policy np:shop/knp.default.db: rule 0 matched: Allow",
			"verdict: allow",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	trace := func(t *testing.T, args ...string) traceOutput {
		t.Helper()
		out := tb.ok("", append([]string{"policy", "trace", "-o", "json"}, args...)...)
		var got traceOutput
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return got
	}

	t.Run("json allow", func(t *testing.T) {
		got := trace(t, "--from", "shop/web", "--to", "10.9.0.2", "--port", "5432")
		if got.Verdict != "allow" || got.From.Endpoint != "wep:shop/web" || got.From.Node != "node-1" || got.From.IP != "10.9.0.1" {
			t.Errorf("got %+v", got)
		}
		if got.Egress == nil || got.Egress.Rule == nil || got.Egress.Rule.Profile != "kns.shop" {
			t.Errorf("egress decided by %+v, want profile kns.shop", got.Egress)
		}
		r := got.Ingress.Rule
		if r == nil {
			t.Fatalf("ingress: no deciding rule: %+v", got.Ingress)
		}
		want := "tier default policy np:shop/knp.default.db ingress 0"
		if d := cmp.Diff(want, strings.Join([]string{"tier", r.Tier, "policy", r.Policy, r.Direction, "0"}, " ")); d != "" || r.Index != 0 {
			t.Errorf("ingress rule (-want +got):\n%s", d)
		}
	})

	t.Run("json deny at end of tier", func(t *testing.T) {
		got := trace(t, "--from", "shop/web", "--to", "shop/db", "--port", "22")
		if got.Verdict != "deny" || got.Ingress == nil || got.Ingress.Verdict != "deny" ||
			got.Ingress.Reason != "end-of-tier" || got.Ingress.Tier != "default" || got.Ingress.Rule != nil {
			t.Errorf("got verdict %q, ingress %+v", got.Verdict, got.Ingress)
		}
	})

	t.Run("outside the cluster", func(t *testing.T) {
		got := trace(t, "--from", "203.0.113.9", "--to", "shop/web", "--proto", "icmp")
		if got.Egress != nil || got.Ingress == nil || got.Verdict != "allow" {
			t.Errorf("got %+v", got)
		}
	})

	t.Run("host endpoint", func(t *testing.T) {
		// A host endpoint with no policy denies all but its failsafe ports.
		if got := trace(t, "--from", "shop/web", "--to", "node-2-eth0", "--port", "80"); got.Verdict != "deny" {
			t.Errorf("port 80: %+v", got)
		}
		if got := trace(t, "--from", "shop/web", "--to", "node-2-eth0", "--port", "22"); got.Verdict != "allow" || got.Ingress.Reason != "failsafe" {
			t.Errorf("port 22: %+v", got.Ingress)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--from", "shop/web", "--to", "shop/db"}, "--port"},
			{[]string{"--from", "shop/nope", "--to", "shop/db", "--port", "1"}, "workload endpoint shop/nope not found"},
			{[]string{"--from", "shop/web", "--to", "shop/db", "--proto", "xyz", "--port", "1"}, "unknown protocol"},
			{[]string{"--from", "shop/web", "--to", "shop/db", "--port", "1", "-o", "yaml"}, "unknown output format"},
			{[]string{"--to", "shop/db", "--port", "1"}, "from"},
		} {
			code, _, stderr := tb.run("", append([]string{"policy", "trace"}, tc.args...)...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("policy trace %v: exit %d, stderr %q; want an error with %q", tc.args, code, stderr, tc.want)
			}
		}
	})
}
