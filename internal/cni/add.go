package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/dataplane/links"
	"github.com/tabbynet/tabby/internal/datastore"
)

// undoTimeout bounds the clean-up after a failed ADD; it runs even when
// the command's own deadline has passed.
const undoTimeout = 30 * time.Second

func (p *plugin) cmdAdd(args *skel.CmdArgs) error {
	var steps stepTimer
	steps.start()
	start := steps.last
	s, err := openSession(args.StdinData, true)
	if err != nil {
		return err
	}
	defer s.close()
	steps.done("session")
	a := newAttachment(s.conf.Name, s.node, args.ContainerID, args.IfName, args.Netns, args.Args)
	log := s.log.With("cmd", "ADD", "container", a.containerID, "iface", a.ifName, "endpoint", a.endpointID())
	res, err := s.add(a, &steps)
	if err != nil {
		log.Error("ADD failed; undone", "err", err, "took", time.Since(start), "steps", steps.String())
		return err
	}
	log.Info("ADD done", "addresses", fmt.Sprint(addrsOf(res.IPs)), "took", time.Since(start), "steps", steps.String())
	return s.printResult(res)
}

// add plumbs the attachment and returns the result. If a step fails, the
// earlier steps are undone in reverse order: endpoint deleted, veth
// removed, addresses released.
func (s *session) add(a attachment, steps *stepTimer) (_ *types100.Result, err error) {
	ctx := s.ctx
	var undo []func(context.Context) error
	defer func() {
		if err == nil {
			return
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		var uerrs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](uctx); uerr != nil {
				uerrs = append(uerrs, uerr)
			}
		}
		if uerr := errors.Join(uerrs...); uerr != nil {
			s.log.Error("undoing a failed ADD left something behind; DEL or GC removes it", "container", a.containerID, "err", uerr)
			var te *types.Error
			if errors.As(err, &te) {
				te.Details += fmt.Sprintf(" (undoing the ADD also failed, so run DEL for this container: %v)", uerr)
			}
		}
	}()

	prefix, err := s.interfacePrefix(ctx)
	if err != nil {
		return nil, datastoreError(nil, err)
	}
	hostIf := links.InterfaceName(prefix, a.endpointID())
	steps.done("config")
	mtu := s.conf.MTU
	if mtu == 0 {
		if mtu, err = hostMTU(); err != nil {
			return nil, asCNIError("detecting the host's MTU failed; set mtu in the network configuration", err)
		}
	}

	src, err := s.addresses(true)
	if err != nil {
		return nil, ipamError(err)
	}
	addrs, dns, err := src.assign(ctx, a)
	if err != nil {
		return nil, ipamError(err)
	}
	undo = append(undo, func(ctx context.Context) error { return src.release(ctx, a) })
	steps.done("ipam")

	// Check the endpoint before plumbing anything; its MAC is known later.
	wep, err := buildEndpoint(a, s.conf.Labels, hostIf, nil, addrs)
	if err != nil {
		return nil, cniError(types.ErrInvalidNetworkConfig, "the workload endpoint would be invalid; fix the labels (args.cni.labels), the pod's names or the network name", err)
	}

	v := veth{hostIf: hostIf, ifName: a.ifName, netns: a.netns, mtu: mtu, addrs: addrs}
	wlMAC, err := v.setUp()
	if err != nil {
		return nil, netnsError(a.netns, err)
	}
	undo = append(undo, func(context.Context) error { return v.tearDown(true) })
	steps.done("veth")

	// The MAC is new at every ADD, so writing the endpoint always makes a
	// new revision, and waiting for it waits for the agent to see the new
	// interface even when ADD runs again for the same container.
	wep.Spec.MAC = wlMAC.String()
	res, err := s.client.Apply(ctx, []v1.Object{wep}, datastore.ApplyOptions{})
	if err != nil {
		return nil, cniError(types.ErrTryAgainLater, "writing the WorkloadEndpoint failed; check the datastore", err)
	}
	undo = append(undo, func(ctx context.Context) error { _, err := s.deleteEndpoint(ctx, a); return err })
	rev, err := strconv.ParseInt(res[0].Object.GetObjectMeta().ResourceVersion, 10, 64)
	if err != nil {
		return nil, asCNIError("reading the WorkloadEndpoint's revision failed", err)
	}

	steps.done("endpoint")
	if err := s.waitProgrammed(ctx, a, rev); err != nil {
		return nil, err
	}
	steps.done("policy")
	r := buildResult(a, hostIf, wlMAC, addrs)
	switch {
	case !dnsEmpty(s.conf.DNS):
		r.DNS = s.conf.DNS
	case dns != nil:
		r.DNS = *dns
	}
	return r, nil
}

// buildResult is the ADD result: the host side (no sandbox) and the
// workload side, the addresses as /32 and /128 on the workload side with
// their gateways, and the default routes.
func buildResult(a attachment, hostIf string, wlMAC net.HardwareAddr, addrs []netip.Addr) *types100.Result {
	r := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			{Name: hostIf, Mac: hostMAC.String()},
			{Name: a.ifName, Mac: wlMAC.String(), Sandbox: a.netns},
		},
	}
	r.IPs = ipConfigs(addrs, types100.Int(1), true)
	if hasFamily(addrs, true) {
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gatewayV4.AsSlice()})
	}
	if hasFamily(addrs, false) {
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: gatewayV6.AsSlice()})
	}
	return r
}

// ipConfigs turns addresses into single-address IP configurations, with
// Tabby's gateways if gateways is set.
func ipConfigs(addrs []netip.Addr, iface *int, gateways bool) []*types100.IPConfig {
	var out []*types100.IPConfig
	for _, ad := range addrs {
		bits := ad.BitLen()
		ipc := &types100.IPConfig{Interface: iface, Address: net.IPNet{IP: ad.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if gateways {
			if ad.Is4() {
				ipc.Gateway = gatewayV4.AsSlice()
			} else {
				ipc.Gateway = gatewayV6.AsSlice()
			}
		}
		out = append(out, ipc)
	}
	return out
}

// addrsOf returns the addresses of IP configurations.
func addrsOf(ipcs []*types100.IPConfig) []netip.Addr {
	var out []netip.Addr
	for _, ipc := range ipcs {
		if ad, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			out = append(out, ad.Unmap())
		}
	}
	return out
}

func dnsEmpty(d types.DNS) bool {
	return len(d.Nameservers) == 0 && d.Domain == "" && len(d.Search) == 0 && len(d.Options) == 0
}

// stepTimer records how long each step of a command took, for the log.
type stepTimer struct {
	last  time.Time
	steps []string
}

func (t *stepTimer) start() { t.last = time.Now() }

func (t *stepTimer) done(step string) {
	now := time.Now()
	t.steps = append(t.steps, fmt.Sprintf("%s=%v", step, now.Sub(t.last).Round(10*time.Microsecond)))
	t.last = now
}

func (t *stepTimer) String() string { return strings.Join(t.steps, " ") }
