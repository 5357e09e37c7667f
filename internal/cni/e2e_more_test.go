package cni

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/testkit"
)

// TestGC: GC keeps the valid attachments and removes the others (host
// side, endpoint, addresses), and releases the network's IPAM handles on
// the node that no valid attachment has.
func TestGC(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	l := h.list(h.conflist("1.1.0", "", nil))
	wa, wb := testkit.NetNS(t), testkit.NetNS(t)
	ra, err := h.add(l, h.runtimeConf(wa, "gc-keep"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.add(l, h.runtimeConf(wb, "gc-stale")); err != nil {
		t.Fatal(err)
	}
	// An ADD that died after IPAM left a handle without an endpoint; a
	// handle of another node and one of another network stay.
	alloc, err := ipam.New(h.client.Store(), ipam.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []ipam.AssignArgs{
		{Node: "node-1", Handle: HandleID(h.network, "gc-leaked", "eth0"), Num4: 1},
		{Node: "node-2", Handle: HandleID(h.network, "gc-other-node", "eth0"), Num4: 1},
		{Node: "node-1", Handle: HandleID("other-net", "gc-other-net", "eth0"), Num4: 1},
	} {
		if _, err := alloc.AutoAssign(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}

	// A fresh libcni cache, so that libcni itself DELs nothing and the
	// plugin's GC does the work.
	c := libcni.NewCNIConfigWithCacheDir([]string{pluginDir(t)}, t.TempDir(), nil)
	args := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "gc-keep", IfName: "eth0"}}}
	if err := h.inHost(func() error { return c.GCNetworkList(t.Context(), l, args) }); err != nil {
		t.Fatalf("GC: %v", err)
	}
	eps := h.endpoints()
	if len(eps) != 1 || eps[0].Spec.ContainerID != "gc-keep" {
		t.Errorf("endpoints after GC: %v", eps)
	}
	if links := h.hostLinks(); len(links) != 1 || links[0] != ra.Interfaces[0].Name {
		t.Errorf("host links after GC: %v, want [%s]", links, ra.Interfaces[0].Name)
	}
	for handle, want := range map[string]int{
		HandleID(h.network, "gc-keep", "eth0"):        2,
		HandleID(h.network, "gc-stale", "eth0"):       0,
		HandleID(h.network, "gc-leaked", "eth0"):      0,
		HandleID(h.network, "gc-other-node", "eth0"):  1,
		HandleID("other-net", "gc-other-net", "eth0"): 1,
	} {
		got, err := alloc.IPsByHandle(t.Context(), handle)
		if err != nil || len(got) != want {
			t.Errorf("after GC, handle %s holds %v (%v), want %d addresses", handle, got, err, want)
		}
	}
	if err := h.check(l, h.runtimeConf(wa, "gc-keep")); err != nil {
		t.Errorf("CHECK of the kept attachment: %v", err)
	}
}

// TestStatus: STATUS succeeds while the datastore and the agent are ready
// and fails with code 50 when the agent is gone.
func TestStatus(t *testing.T) {
	h := newTestHost(t, hostOptions{})
	l := h.list(h.conflist("1.1.0", "", nil))
	status := func() error {
		return h.inHost(func() error { return h.cniConfig().GetStatusNetworkList(t.Context(), l) })
	}
	if err := status(); err != nil {
		t.Fatalf("STATUS with a ready agent: %v", err)
	}
	h.stop()
	err := status()
	if cniCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "tabby agent --node node-1") {
		t.Errorf("STATUS without agent: %v (code %d), want code 50 with advice", err, cniCode(err))
	}
}

// TestPortmapChain: tabby chained with the reference portmap plugin. The
// result passes through portmap, CHECK and DEL work, and a connection to
// the host port reaches the container.
func TestPortmapChain(t *testing.T) {
	requireTool(t, "portmap")
	h := newTestHost(t, hostOptions{})
	portmap := map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "backend": "nftables"}
	l := h.list(h.conflist("1.1.0", "", nil, portmap))
	wl := testkit.NetNS(t)
	rt := h.runtimeConf(wl, "pm-1")
	rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}}}
	res, err := h.add(l, rt)
	if err != nil {
		t.Fatalf("ADD tabby+portmap: %v", err)
	}
	// The result is tabby's, passed through.
	if len(res.IPs) != 2 || len(res.Interfaces) != 2 || res.Interfaces[1].Sandbox != wl.Path() {
		t.Errorf("chained result: %+v", res)
	}
	w := h.endpoints()[0]
	if diff := cmp.Diff(w.Spec.IPNetworks, []string{addrsOfResult(res)[0] + "/32", addrsOfResult(res)[1] + "/128"}); diff != "" {
		t.Errorf("result and endpoint differ (-endpoint +result):\n%s", diff)
	}
	if err := h.check(l, rt); err != nil {
		t.Errorf("CHECK tabby+portmap: %v", err)
	}

	// Bonus: a connection to the host port is DNAT'd to the container. The
	// host namespace gets an address on lo to connect from and to.
	h.ip("addr", "add", "10.99.0.1/32", "dev", "lo")
	var ln net.Listener
	if err := wl.Do(func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from the container\n")
			c.Close()
		}
	}()
	var got []byte
	err = h.inHost(func() error {
		c, err := net.DialTimeout("tcp", "10.99.0.1:18080", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil || string(got) != "hello from the container\n" {
		t.Errorf("connection to host port 18080: %q, %v", got, err)
	}
	if err := h.del(l, rt); err != nil {
		t.Errorf("DEL tabby+portmap: %v", err)
	}
	if eps := h.endpoints(); len(eps) != 0 {
		t.Errorf("endpoints after DEL: %v", eps)
	}
}

// TestDelegatedIPAM: with ipam.type host-local the plugin delegates ADD and
// DEL to it and plumbs the addresses it returns as /32s.
func TestDelegatedIPAM(t *testing.T) {
	requireTool(t, "host-local")
	h := newTestHost(t, hostOptions{})
	dataDir := t.TempDir()
	l := h.list(h.conflist("1.1.0", "", func(pc map[string]any) {
		pc["ipam"] = map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": "10.80.0.0/24"}}}, "dataDir": dataDir}
	}))
	wa, wb := testkit.NetNS(t), testkit.NetNS(t)
	ra, err := h.add(l, h.runtimeConf(wa, "hl-a"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := h.add(l, h.runtimeConf(wb, "hl-b"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := addrsOfResult(ra), addrsOfResult(rb)
	if len(a) != 1 || !strings.HasPrefix(a[0], "10.80.0.") || len(b) != 1 || a[0] == b[0] {
		t.Fatalf("host-local addresses %v and %v", a, b)
	}
	if ones, _ := ra.IPs[0].Address.Mask.Size(); ones != 32 {
		t.Errorf("address %v: want a /32", ra.IPs[0].Address)
	}
	if !ping(wa, b[0]) {
		t.Errorf("ping %s → %s failed", a[0], b[0])
	}
	if err := h.check(l, h.runtimeConf(wa, "hl-a")); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := h.del(l, h.runtimeConf(wa, "hl-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, h.network, a[0])); !os.IsNotExist(err) {
		t.Errorf("host-local still holds %s after DEL: %v", a[0], err)
	}
}

// TestIPAMPlugin runs the binary as tabby-ipam, as a main plugin such as
// bridge would: ADD (twice: same addresses), CHECK, GC and DEL.
func TestIPAMPlugin(t *testing.T) {
	h := newTestHost(t, hostOptions{noAgent: true})
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": h.network, "type": "bridge", "isGateway": true,
		"datastore": map[string]any{"endpoints": h.etcd.Endpoints}, "nodename": "node-1", "agent_socket": h.socket,
		"ipam": map[string]any{"type": IPAMPluginType, "assign_ipv6": true},
	})
	path := filepath.Join(pluginDir(t), IPAMPluginType)
	args := func(cmd, id string) *invoke.Args {
		return &invoke.Args{Command: cmd, ContainerID: id, NetNS: "/run/netns/none", IfName: "eth0", Path: pluginDir(t)}
	}
	ctx := t.Context()
	var first []string
	for i := range 2 {
		r, err := invoke.ExecPluginWithResult(ctx, path, conf, args("ADD", "ipam-1"), nil)
		if err != nil {
			t.Fatalf("ADD #%d: %v", i+1, err)
		}
		res, err := types100.NewResultFromResult(r)
		if err != nil {
			t.Fatal(err)
		}
		got := addrsOfResult(res)
		if len(got) != 2 || (first != nil && !cmp.Equal(first, got)) {
			t.Errorf("ADD #%d: %v (first %v)", i+1, got, first)
		}
		first = got
		if i == 0 {
			var prev map[string]any
			b, _ := json.Marshal(res)
			_ = json.Unmarshal(b, &prev)
			var withPrev map[string]any
			_ = json.Unmarshal(conf, &withPrev)
			withPrev["prevResult"] = prev
			cc, _ := json.Marshal(withPrev)
			if err := invoke.ExecPluginWithoutResult(ctx, path, cc, args("CHECK", "ipam-1"), nil); err != nil {
				t.Errorf("CHECK: %v", err)
			}
		}
	}
	if _, err := invoke.ExecPluginWithResult(ctx, path, conf, args("ADD", "ipam-2"), nil); err != nil {
		t.Fatal(err)
	}
	// GC keeps ipam-1 and releases ipam-2.
	var gc map[string]any
	_ = json.Unmarshal(conf, &gc)
	gc["cniVersion"] = "1.1.0"
	gc["cni.dev/valid-attachments"] = []types.GCAttachment{{ContainerID: "ipam-1", IfName: "eth0"}}
	gcConf, _ := json.Marshal(gc)
	if err := invoke.ExecPluginWithoutResult(ctx, path, gcConf, &invoke.Args{Command: "GC", Path: pluginDir(t)}, nil); err != nil {
		t.Fatalf("GC: %v", err)
	}
	alloc, _ := ipam.New(h.client.Store(), ipam.Config{})
	if got, _ := alloc.IPsByHandle(ctx, HandleID(h.network, "ipam-2", "eth0")); len(got) != 0 {
		t.Errorf("GC left ipam-2 with %v", got)
	}
	for i := range 2 {
		if err := invoke.ExecPluginWithoutResult(ctx, path, conf, args("DEL", "ipam-1"), nil); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if got, _ := alloc.IPsByHandle(ctx, HandleID(h.network, "ipam-1", "eth0")); len(got) != 0 {
		t.Errorf("DEL left ipam-1 with %v", got)
	}
}

// TestErrors: failures are CNI errors with the specification's codes and a
// message that says what to do.
func TestErrors(t *testing.T) {
	h := newTestHost(t, hostOptions{noAgent: true})
	path := filepath.Join(pluginDir(t), PluginType)
	wl := testkit.NetNS(t)
	add := func(conf map[string]any, netnsPath string) error {
		b, _ := json.Marshal(conf)
		return h.inHost(func() error {
			_, err := invoke.ExecPluginWithResult(context.Background(), path, b,
				&invoke.Args{Command: "ADD", ContainerID: "err-1", NetNS: netnsPath, IfName: "eth0", Path: pluginDir(t)}, nil)
			return err
		})
	}
	base := func() map[string]any {
		pc := h.pluginConf("1s")
		pc["cniVersion"], pc["name"] = "1.1.0", h.network
		return pc
	}
	for _, tc := range []struct {
		name  string
		edit  func(map[string]any)
		netns string
		code  uint
		want  []string
	}{
		{"unknown field", func(c map[string]any) { c["mtuu"] = 1400 }, wl.Path(), types.ErrInvalidNetworkConfig,
			[]string{"mtuu: unknown field", "docs/cni.md"}},
		{"bad value", func(c map[string]any) { c["policy_timeout"] = "soon" }, wl.Path(), types.ErrInvalidNetworkConfig,
			[]string{`policy_timeout: "soon" is not a duration`}},
		{"datastore down", func(c map[string]any) { c["datastore"] = map[string]any{"endpoints": []string{"http://127.0.0.1:1"}} }, wl.Path(),
			types.ErrTryAgainLater, []string{"cannot reach the datastore", "check that etcd is running"}},
		{"no pool", func(c map[string]any) {
			c["ipam"] = map[string]any{"type": IPAMPluginType, "ipv4_pools": []string{"missing"}}
		}, wl.Path(), CodeNoAddress, []string{"no IP address for the workload", `ipam.ipv4_pools names the IPPool "missing"`}},
		{"no netns", nil, "/run/netns/tabby-does-not-exist", types.ErrInvalidNetNS, []string{"does not exist"}},
	} {
		c := base()
		if tc.edit != nil {
			tc.edit(c)
		}
		err := add(c, tc.netns)
		if cniCode(err) != tc.code {
			t.Errorf("%s: %v (code %d), want code %d", tc.name, err, cniCode(err), tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
	}
	// None of the failures left anything behind.
	if eps := h.endpoints(); len(eps) != 0 {
		t.Errorf("endpoints: %v", eps)
	}
	if links := h.hostLinks(); len(links) != 0 {
		t.Errorf("host links: %v", links)
	}
}
