package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/netns"
)

// The top-of-rack fabric (--fabric tor), after Calico's "AS per compute
// server" design:
//
//	tl-NAME-fab (spine)              tl-NAME-tR (one per rack)              tl-NAME-nK
//	br0 172.31.IDX.254/24  ◄─veth─►  eth0 172.31.IDX.R/24  (BIRD, AS 65100+R)
//	    fd00:ffff:IDX::fe/64              fd00:ffff:IDX::R/64
//	static routes to the racks       br0  172.(15+R).IDX.254/24 ◄─veth─►   eth0 172.(15+R).IDX.K/24
//	via the ToRs                          fd00:ffff:IDX:R::fe/64           fd00:ffff:IDX:R::K/64
//	                                                                       default via the ToR
//
// Node K is in rack (K-1) mod R + 1 (round robin), has AS 65000+K and peers
// eBGP with its ToR only (node-to-node mesh off); the ToRs peer eBGP with
// each other over the spine. Each session is IPv4 and carries IPv6 too.

// ToR is the top-of-rack router of one rack: a namespace running BIRD.
type ToR struct {
	Name  string `json:"name"` // t1, t2, …
	Rack  string `json:"rack"` // r1, r2, …
	NetNS string `json:"netns"`
	AS    uint32 `json:"as"`
	// Spine4 and Spine6 are its addresses on the spine (the fabric
	// bridge); Gateway4 and Gateway6 its addresses in the rack's subnets,
	// the nodes' default gateway and BGP peer.
	Spine4   netip.Addr `json:"spine4"`
	Spine6   netip.Addr `json:"spine6,omitzero"`
	Gateway4 netip.Addr `json:"gateway4"`
	Gateway6 netip.Addr `json:"gateway6,omitzero"`
	// Config is BIRD's configuration file, Socket its control socket
	// (birdc -s SOCKET).
	Config string `json:"config"`
	Socket string `json:"socket"`
	Bird   *Proc  `json:"bird,omitempty"`
}

// ToR returns the top-of-rack router called name (t1, t2, …).
func (s *State) ToR(name string) (*ToR, bool) {
	for i := range s.ToRs {
		if s.ToRs[i].Name == name {
			return &s.ToRs[i], true
		}
	}
	return nil, false
}

// MaxRacks is the most racks a lab can have: each rack's IPv4 subnet is
// 172.(15+R).IDX.0/24, in 172.16.0.0/12 below the spine's 172.31.
const MaxRacks = 15

const (
	torBaseAS  = 65100 // ToR tR has AS torBaseAS+R
	nodeBaseAS = 65000 // node nK has AS nodeBaseAS+K
	rackLabel  = "lab.tabby.dev/rack"
	torUplink  = "eth0" // the ToR's link to the spine
)

// rackOf is the rack (1…racks) of node k: round robin.
func rackOf(k, racks int) int { return (k-1)%racks + 1 }

func rackAddr4(idx, rack, host int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, byte(15 + rack), byte(idx), byte(host)})
}

func rackAddr6(idx, rack, host int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:ffff:%x:%x::%x", idx, rack, host))
}

// newToR describes the ToR of rack r of the lab s.
func newToR(s *State, r int) ToR {
	t := ToR{
		Name:     fmt.Sprintf("t%d", r),
		Rack:     fmt.Sprintf("r%d", r),
		NetNS:    fmt.Sprintf("%s%s-t%d", NSPrefix, s.Name, r),
		AS:       uint32(torBaseAS + r),
		Spine4:   fabricAddr4(s.Index, r),
		Gateway4: rackAddr4(s.Index, r, 254),
		Config:   filepath.Join(Dir(s.Name), fmt.Sprintf("t%d.bird.conf", r)),
		Socket:   filepath.Join(Dir(s.Name), fmt.Sprintf("t%d.bird.ctl", r)),
	}
	if s.IPv6 {
		t.Spine6 = fabricAddr6(s.Index, r)
		t.Gateway6 = rackAddr6(s.Index, r, 0xfe)
	}
	return t
}

// buildToRs creates the namespace of each rack's ToR: its uplink to the
// spine bridge, its rack bridge with the rack's gateway addresses, and
// forwarding; and the spine's static routes to the racks' subnets.
func buildToRs(s *State, racks int) error {
	fab, err := nl.Open(netns.NamedPath(s.FabricNS))
	if err != nil {
		return err
	}
	defer fab.Close()
	spine, err := fab.LinkByName(bridgeName)
	if err != nil {
		return err
	}
	for r := 1; r <= racks; r++ {
		t := newToR(s, r)
		s.ToRs = append(s.ToRs, t) // recorded before it exists, for Down
		if err := buildToR(fab, spine.Index, t); err != nil {
			return fmt.Errorf("top-of-rack router %s: %w", t.Name, err)
		}
	}
	return nil
}

func buildToR(fab *nl.Handle, spine int, t ToR) error {
	h, err := newNS(t.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, sc := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := h.SysctlSet(sc, "1"); err != nil {
			return err
		}
	}
	port, err := fab.CreateVeth(nl.Veth{Name: t.Name, PeerName: torUplink, PeerNS: h.NS()})
	if err != nil {
		return err
	}
	if err := fab.LinkSetMaster(port.Index, spine); err != nil {
		return err
	}
	if err := fab.LinkSetUp(port.Index); err != nil {
		return err
	}
	up, err := h.LinkByName(torUplink)
	if err != nil {
		return err
	}
	br, err := h.CreateBridge(bridgeName)
	if err != nil {
		return err
	}
	addrs := []nl.Addr{
		{LinkIndex: up.Index, Prefix: netip.PrefixFrom(t.Spine4, 24)},
		{LinkIndex: br.Index, Prefix: netip.PrefixFrom(t.Gateway4, 24)},
	}
	if t.Spine6.IsValid() {
		addrs = append(addrs,
			nl.Addr{LinkIndex: up.Index, Prefix: netip.PrefixFrom(t.Spine6, 64), NoDAD: true},
			nl.Addr{LinkIndex: br.Index, Prefix: netip.PrefixFrom(t.Gateway6, 64), NoDAD: true})
	}
	for _, a := range addrs {
		if err := h.AddrAdd(a); err != nil {
			return err
		}
	}
	for _, l := range []int{up.Index, br.Index} {
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
	}
	// The spine (where the datastore answers the agents) reaches the
	// rack through its ToR.
	routes := []nl.Route{{Dst: netip.PrefixFrom(t.Gateway4, 24).Masked(), Gateway: t.Spine4, Protocol: nl.ProtoStatic}}
	if t.Spine6.IsValid() {
		routes = append(routes, nl.Route{Dst: netip.PrefixFrom(t.Gateway6, 64).Masked(), Gateway: t.Spine6, Protocol: nl.ProtoStatic})
	}
	for _, r := range routes {
		if err := fab.RouteAdd(r); err != nil {
			return err
		}
	}
	return nil
}

// torPeer is a BGP neighbour in a ToR's configuration.
type torPeer struct {
	Name string
	Addr netip.Addr
	AS   uint32
}

// birdTemplate is a ToR's BIRD configuration. The ToR imports every
// route from its nodes and from the other ToRs except the lab's own
// fabric addresses; it sends the nodes only BGP-learned routes (the
// workloads' blocks and /32s of the other nodes), and the other ToRs
// everything it has, including its rack's subnets (so that nodes of
// different racks reach each other's addresses too). BGP routes go into
// the ToR's kernel table, which forwards.
var birdTemplate = template.Must(template.New("bird").Parse(`# tabby lab {{.Lab}}: top-of-rack router {{.T.Name}} of rack {{.T.Rack}}, AS {{.T.AS}}.
router id {{.T.Spine4}};
log stderr { info, remote, warning, error, auth, fatal, bug };

define FABRIC4 = [ 172.16.0.0/12+ ];
{{- if .IPv6}}
define FABRIC6 = [ fd00:ffff::/32+ ];
{{- end}}

protocol device { scan time 10; }

# The rack's subnets, for the other ToRs.
protocol direct {
	ipv4;
{{- if .IPv6}}
	ipv6;
{{- end}}
	interface "{{.Bridge}}";
}

protocol kernel {
	ipv4 { export where source = RTS_BGP; };
	merge paths on;
}
{{- if .IPv6}}

protocol kernel {
	ipv6 { export where source = RTS_BGP; };
	merge paths on;
}
{{- end}}

template bgp tabbynode {
	local {{.T.Gateway4}} as {{.T.AS}};
	connect delay time 1;
	connect retry time 2;
	error wait time 1, 5;
	ipv4 {
		import where !(net ~ FABRIC4);
		export where source = RTS_BGP && !(net ~ FABRIC4);
	};
{{- if .IPv6}}
	ipv6 {
		import where !(net ~ FABRIC6);
		export where source = RTS_BGP && !(net ~ FABRIC6);
		next hop address {{.T.Gateway6}};
	};
{{- end}}
}

template bgp spine {
	local {{.T.Spine4}} as {{.T.AS}};
	connect delay time 1;
	connect retry time 2;
	error wait time 1, 5;
	ipv4 {
		import all;
		export all;
	};
{{- if .IPv6}}
	ipv6 {
		import all;
		export all;
		next hop address {{.T.Spine6}};
	};
{{- end}}
}
{{range .Nodes}}
protocol bgp {{.Name}} from tabbynode { neighbor {{.Addr}} as {{.AS}}; }
{{- end}}
{{range .ToRs}}
protocol bgp {{.Name}} from spine { neighbor {{.Addr}} as {{.AS}}; }
{{- end}}
`))

// birdConfig returns the BIRD configuration of the ToR t of lab s.
func birdConfig(s *State, t ToR) string {
	data := struct {
		Lab    string
		T      ToR
		IPv6   bool
		Bridge string
		Nodes  []torPeer
		ToRs   []torPeer
	}{Lab: s.Name, T: t, IPv6: s.IPv6, Bridge: bridgeName}
	for _, n := range s.Nodes {
		if n.Rack == t.Rack {
			data.Nodes = append(data.Nodes, torPeer{n.Name, n.IPv4, n.AS})
		}
	}
	for _, o := range s.ToRs {
		if o.Name != t.Name {
			data.ToRs = append(data.ToRs, torPeer{o.Name, o.Spine4, o.AS})
		}
	}
	var b strings.Builder
	if err := birdTemplate.Execute(&b, data); err != nil {
		panic(err) // the template and its data are ours
	}
	return b.String()
}

// requireBird checks that BIRD 2 is installed.
func requireBird() error {
	for _, c := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("fabric tor: needs %s (Debian package bird2): %w", c, err)
		}
	}
	return nil
}

// checkBirdConfig has BIRD parse the configuration file path.
func checkBirdConfig(path string) error {
	out, err := exec.Command("bird", "-p", "-c", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bird -p -c %s: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startToRs writes each ToR's BIRD configuration, has BIRD check it, and
// starts BIRD in the ToR's namespace.
func startToRs(s *State) error {
	for i := range s.ToRs {
		t := &s.ToRs[i]
		if err := os.WriteFile(t.Config, []byte(birdConfig(s, *t)), 0o644); err != nil {
			return err
		}
		if err := checkBirdConfig(t.Config); err != nil {
			return err
		}
		// -f keeps BIRD in the foreground: the recorded PID is BIRD's.
		p, err := startDetached(filepath.Join(Dir(s.Name), "logs", t.Name+"-bird.log"), t.NetNS, nil,
			"bird", "-f", "-c", t.Config, "-s", t.Socket)
		if err != nil {
			return err
		}
		t.Bird = p
	}
	return nil
}

// BirdCommand runs birdc on the ToR's control socket and returns its
// output.
func (t *ToR) BirdCommand(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "birdc", append([]string{"-s", t.Socket}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc -s %s %s: %w: %s", t.Socket, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// established counts the BGP protocols that `birdc show protocols`
// reports Established, by name.
func established(out string) map[string]bool {
	up := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// Name Proto Table State Since Info
		if len(f) >= 6 && f[1] == "BGP" && f[len(f)-1] == "Established" {
			up[f[0]] = true
		}
	}
	return up
}

// waitToRs waits until every BGP session of every ToR (with its nodes
// and with the other ToRs) is established.
func waitToRs(ctx context.Context, s *State) error {
	for i := range s.ToRs {
		t := &s.ToRs[i]
		var want []string
		for _, n := range s.Nodes {
			if n.Rack == t.Rack {
				want = append(want, n.Name)
			}
		}
		for _, o := range s.ToRs {
			if o.Name != t.Name {
				want = append(want, o.Name)
			}
		}
		var last string
		for {
			out, err := t.BirdCommand(ctx, "show", "protocols")
			up := established(out)
			missing := 0
			for _, w := range want {
				if !up[w] {
					missing++
				}
			}
			if err == nil && missing == 0 {
				break
			}
			last = out
			if err != nil {
				last = err.Error()
			}
			if !t.Bird.Alive() {
				return fmt.Errorf("BIRD of %s exited:\n%s", t.Name, tail(t.Bird.Log))
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("BGP sessions of %s not established: %w (last:\n%s)\n%s", t.Name, ctx.Err(), last, tail(t.Bird.Log))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// torResources are the lab's BGP settings for --fabric tor: the mesh off,
// and per rack a BGPPeer that peers the rack's nodes with their ToR.
func torResources(st *State) string {
	var b strings.Builder
	for _, t := range st.ToRs {
		fmt.Fprintf(&b, "---\napiVersion: tabby.dev/v1\nkind: BGPPeer\nmetadata: {name: %s-tor}\nspec: {nodeSelector: \"%s == '%s'\", peerIP: %q, asNumber: %d}\n",
			t.Rack, rackLabel, t.Rack, t.Gateway4, t.AS)
	}
	return b.String()
}
