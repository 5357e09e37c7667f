package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/policy"
	"github.com/tabbynet/tabby/internal/testkit"
)

// This file wires a host namespace and workload namespaces the way the
// CNI plugin and the links and routes managers do (see
// internal/dataplane/links/e2e_test.go), and moves real packets.

type lab struct {
	t      *testing.T
	hostNS *netns.NS
	host   *nl.Handle
	wls    []*workload
}

type workload struct {
	name  string
	id    policy.EndpointID
	ns    *netns.NS
	h     *nl.Handle
	iface string // host side
	v4    netip.Addr
	v6    netip.Addr
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openNL(t testing.TB, ns *netns.NS) *nl.Handle {
	t.Helper()
	h, err := nl.Open(ns.Path())
	must(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireNft(t)
	testkit.RequireCommand(t, "ping", "iputils-ping")
	l := &lab{t: t, hostNS: testkit.NetNS(t)}
	l.host = openNL(t, l.hostNS)
	lo, err := l.host.LinkByName("lo")
	must(t, err)
	must(t, l.host.LinkSetUp(lo.Index))
	return l
}

// addWorkload makes a workload namespace wired to the host as the CNI
// plugin does (testkit.NewWorkload).
func (l *lab) addWorkload(name, v4, v6 string) *workload {
	t := l.t
	t.Helper()
	id := policy.WorkloadEndpointID("default", name)
	tw := testkit.NewWorkload(t, l.host, links.InterfaceName("tabby", string(id)), netip.MustParseAddr(v4), netip.MustParseAddr(v6))
	w := &workload{name: name, id: id, ns: tw.NS, h: tw.Handle, iface: tw.HostIface, v4: tw.V4, v6: tw.V6}
	l.wls = append(l.wls, w)
	return w
}

// program runs the links and routes managers for all workloads.
func (l *lab) program() {
	t := l.t
	t.Helper()
	lm, err := links.New(links.Config{}, l.host, nil)
	must(t, err)
	rm, err := routes.New(routes.Config{}, l.host, nil)
	must(t, err)
	var ifaces []links.Interface
	var rts []routes.Route
	for _, w := range l.wls {
		ifaces = append(ifaces, links.Interface{Name: w.iface, IPv4: true, IPv6: true})
		rts = append(rts, routes.Route{Dst: netip.PrefixFrom(w.v4, 32), Dev: w.iface}, routes.Route{Dst: netip.PrefixFrom(w.v6, 128), Dev: w.iface})
	}
	lm.Set(ifaces)
	_, err = lm.Apply(ctxT(t))
	must(t, err)
	rm.Set(rts)
	_, err = rm.Apply(ctxT(t))
	must(t, err)
}

// --- traffic ---

const (
	okTimeout   = 3 * time.Second        // a flow that should work
	denyTimeout = 400 * time.Millisecond // how long a dropped flow is given
)

// tcpServer listens on port in ns (all addresses) and echoes lines.
func tcpServer(t testing.TB, ns *netns.NS, network string, port int) {
	t.Helper()
	var ln net.Listener
	must(t, ns.Do(func() (err error) {
		ln, err = net.Listen(network, net.JoinHostPort("", strconv.Itoa(port)))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// tcpDial connects from ns to dst:port and exchanges a line.
func tcpDial(ns *netns.NS, dst netip.Addr, port int, timeout time.Duration) error {
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(dst, uint16(port)).String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("hi\n")); err != nil {
			return err
		}
		buf := make([]byte, 3)
		_, err = io.ReadFull(c, buf)
		return err
	})
}

// udpServer receives datagrams on port in ns and answers each.
type udpServer struct {
	mu   sync.Mutex
	seen map[string]bool // payloads
}

func newUDPServer(t testing.TB, ns *netns.NS, network string, port int) *udpServer {
	t.Helper()
	s := &udpServer{seen: map[string]bool{}}
	var pc net.PacketConn
	must(t, ns.Do(func() (err error) {
		pc, err = net.ListenPacket(network, net.JoinHostPort("", strconv.Itoa(port)))
		return err
	}))
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.seen[string(buf[:n])] = true
			s.mu.Unlock()
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return s
}

func (s *udpServer) got(payload string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[payload]
}

// udpExchange sends payload from ns (from src, if valid) to dst:port and
// waits for the echo.
func udpExchange(ns *netns.NS, src, dst netip.Addr, port int, payload string, timeout time.Duration) error {
	return ns.Do(func() error {
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		if err != nil {
			return err
		}
		defer c.Close()
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 1500)
		// Resend: the first datagram may wait for neighbour resolution.
		for time.Now().Before(deadline) {
			if _, err := c.Write([]byte(payload)); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil && string(buf[:n]) == payload {
				return nil
			}
		}
		return errors.New("no answer")
	})
}

// ping sends ICMP echo requests from ns to dst.
func ping(ns *netns.NS, dst netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+2*time.Second)
	defer cancel()
	out, err := netns.Exec(ctx, ns.Path(), "ping", "-c1", "-W", strconv.FormatFloat(timeout.Seconds(), 'f', 1, 64), dst.String())
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// flow is a check of one flow: it must work (want) or be dropped.
type flow struct {
	what string
	want bool
	try  func(timeout time.Duration) error
}

// expect checks flows, all at once.
func expect(t *testing.T, flows ...flow) {
	t.Helper()
	errs := make([]string, len(flows))
	var wg sync.WaitGroup
	for i, f := range flows {
		wg.Go(func() {
			timeout := denyTimeout
			if f.want {
				timeout = okTimeout
			}
			err := f.try(timeout)
			switch {
			case f.want && err != nil:
				errs[i] = fmt.Sprintf("%s: want allowed, got %v", f.what, err)
			case !f.want && err == nil:
				errs[i] = fmt.Sprintf("%s: want dropped, but it went through", f.what)
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}
