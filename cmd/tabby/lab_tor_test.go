package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testkit"
)

// torLabName is unique per test process and call, and starts with "tor".
func torLabName() string {
	return fmt.Sprintf("tor%d-%d", os.Getpid(), labCounter.Add(1))
}

// TestLabTor runs a dual-stack lab with --fabric tor: 4 nodes in 2 racks,
// each rack with a BIRD top-of-rack router. Workloads reach each other in
// the same rack and across racks, the ToRs hold the workload routes, the
// path goes node → ToR → ToR → node, policy still applies, and down
// leaves nothing behind.
func TestLabTor(t *testing.T) {
	testkit.RequireCommand(t, "bird", "bird2")
	testkit.RequireCommand(t, "birdc", "bird2")
	testkit.RequireCommand(t, "traceroute", "traceroute")
	e := newLabEnv(t)

	// Bad flags are refused before anything is made.
	bad := torLabName()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fabric", "tor", "--nodes", "2", "--racks", "3"}, "racks: 3"},
		{[]string{"--fabric", "l2", "--racks", "2"}, "racks: 2: only with fabric tor"},
		{[]string{"--fabric", "spine"}, `fabric: "spine"`},
	} {
		out, code := e.run(append([]string{"lab", "up", "--name", bad}, tc.args...)...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("lab up %s: exit %d, want an error with %q:\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
		if _, err := os.Stat(lab.Dir(bad)); err == nil {
			t.Fatalf("lab up %s left %s", strings.Join(tc.args, " "), lab.Dir(bad))
		}
	}

	name := torLabName()
	st := e.up(name, "--fabric", "tor", "--nodes", "4", "--racks", "2", "--ipv6")
	if st.Fabric != "tor" || len(st.ToRs) != 2 || len(st.Nodes) != 4 {
		t.Fatalf("state: %+v", st)
	}
	t1, t2 := st.ToRs[0], st.ToRs[1]
	for i, n := range st.Nodes {
		if want := []string{"r1", "r2"}[i%2]; n.Rack != want || n.AS != uint32(65001+i) {
			t.Errorf("node %s: rack %s AS %d, want rack %s AS %d", n.Name, n.Rack, n.AS, want, 65001+i)
		}
	}
	for _, tor := range st.ToRs {
		if !tor.Bird.Alive() {
			t.Errorf("BIRD of %s is not running", tor.Name)
		}
	}

	// n1 peers eBGP with its ToR only.
	status := e.must("node", "status", "n1", "--status-socket", st.Nodes[0].Socket)
	if !strings.Contains(status, t1.Gateway4.String()+":179") || !strings.Contains(status, fmt.Sprint(t1.AS)) ||
		strings.Count(status, "Established") != 1 || strings.Contains(status, "mesh") {
		t.Errorf("tabby node status n1:\n%s", status)
	}
	// Each ToR has a session with each node of its rack and with the
	// other ToR (lab exec takes a ToR's name).
	protocols := e.must("lab", "--name", name, "exec", "t1", "--", "birdc", "-s", t1.Socket, "show", "protocols")
	if strings.Count(protocols, "Established") != 3 {
		t.Errorf("t1's sessions (want n1, n3 and t2 established):\n%s", protocols)
	}

	e.must("lab", "--name", name, "run", "client", "--node", "n1", "--labels", "app=client", "--serve", "tcp:80")
	e.must("lab", "--name", name, "run", "server", "--node", "n2", "--labels", "app=server", "--serve", "tcp:80")
	e.must("lab", "--name", name, "run", "peer", "--node", "n3", "--labels", "app=peer", "--serve", "tcp:80")
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	client, _ := st.Workload("client")
	server, _ := st.Workload("server")

	for _, fam := range []string{"4", "6"} {
		for _, to := range []string{"server", "peer"} { // across racks, same rack
			e.waitProbe(true, "--name", name, "client", to, "--proto", "tcp", "--port", "80", "--family", fam)
			e.waitProbe(true, "--name", name, "client", to, "--proto", "icmp", "--family", fam)
		}
		e.waitProbe(true, "--name", name, "server", "peer", "--proto", "tcp", "--port", "80", "--family", fam)
	}

	// The ToRs hold the workload routes: t2 learned client's block from
	// t1 (AS path 65101 65001), t1 server's from t2, IPv4 and IPv6; t1
	// learned client's from n1.
	for _, tc := range []struct {
		tor  lab.ToR
		addr string
		want []string
	}{
		{t2, client.IPv4.String(), []string{"[t1 ", "AS65001i"}},
		{t2, client.IPv6.String(), []string{"[t1 ", "AS65001i"}},
		{t1, server.IPv4.String(), []string{"[t2 ", "AS65002i"}},
		{t1, server.IPv6.String(), []string{"[t2 ", "AS65002i"}},
		{t1, client.IPv4.String(), []string{"[n1 ", "via " + st.Nodes[0].IPv4.String()}},
	} {
		e.waitOutput(tc.want, "lab", "--name", name, "exec", tc.tor.Name, "--", "birdc", "-s", tc.tor.Socket, "show", "route", "for", tc.addr, "all")
	}
	// n1 reaches server's block via its ToR (a BGP-learned route).
	e.waitOutput([]string{"via " + t1.Gateway4.String()}, "lab", "--name", name, "exec", "n1", "--", "ip", "-4", "route", "show", "proto", "80")
	e.waitOutput([]string{"via " + t1.Gateway6.String()}, "lab", "--name", name, "exec", "n1", "--", "ip", "-6", "route", "show", "proto", "80")
	// Across racks the packets go through both ToRs.
	tr := e.must("lab", "--name", name, "exec", "client", "--", "traceroute", "-n", "-q", "1", "-w", "1", server.IPv4.String())
	if !strings.Contains(tr, t1.Gateway4.String()) || !strings.Contains(tr, t2.Spine4.String()) {
		t.Errorf("traceroute client -> server does not pass %s and %s:\n%s", t1.Gateway4, t2.Spine4, tr)
	}

	e.apply(name, labDenyPolicy)
	for _, fam := range []string{"4", "6"} {
		e.waitProbe(false, "--name", name, "client", "server", "--proto", "tcp", "--port", "80", "--family", fam)
		e.waitProbe(true, "--name", name, "server", "client", "--proto", "tcp", "--port", "80", "--family", fam)
		e.waitProbe(true, "--name", name, "client", "peer", "--proto", "tcp", "--port", "80", "--family", fam)
	}

	e.downAndCheck(name)
}

// waitOutput runs tabby until its output contains every string of want,
// for up to 10 s.
func (e *labEnv) waitOutput(want []string, args ...string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := e.run(args...)
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
				break
			}
		}
		if code == 0 && missing == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("tabby %s: exit %d, output lacks %q:\n%s", strings.Join(args, " "), code, missing, out)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
