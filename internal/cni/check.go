package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tabbynet/tabby/internal/agent"
)

// cmdCheck verifies the attachment against prevResult: the workload
// side's addresses, routes and neighbours, the host side, the
// WorkloadEndpoint, the IPAM handle and the agent's status.
func (p *plugin) cmdCheck(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, true)
	if err != nil {
		return err
	}
	defer s.close()
	ctx := s.ctx
	a := newAttachment(s.conf.Name, s.node, args.ContainerID, args.IfName, args.Netns, args.Args)
	prev, err := s.prevResult()
	if err != nil {
		return err
	}
	hostIf, addrs, err := attachmentOf(prev, a)
	if err != nil {
		return cniError(types.ErrInvalidNetworkConfig, "prevResult does not describe this attachment", err)
	}
	failed := func(what string, err error) error {
		return cniError(types.ErrInternal, "CHECK: "+what+"; DEL and ADD the container again to repair it", err)
	}

	w, err := s.endpoint(ctx, a)
	switch {
	case err != nil:
		return datastoreError(nil, err)
	case w == nil:
		return failed("the WorkloadEndpoint is missing", fmt.Errorf("no WorkloadEndpoint %s", a.endpointID()))
	case w.Spec.ContainerID != a.containerID:
		return failed("the WorkloadEndpoint belongs to another container", fmt.Errorf("%s has containerID %q", a.endpointID(), w.Spec.ContainerID))
	case w.Spec.InterfaceName != hostIf:
		return failed("the WorkloadEndpoint names another host interface", fmt.Errorf("spec.interfaceName %q, prevResult %q", w.Spec.InterfaceName, hostIf))
	}
	var want []string
	for _, ad := range addrs {
		want = append(want, netip.PrefixFrom(ad, ad.BitLen()).String())
	}
	if got := slices.Sorted(slices.Values(w.Spec.IPNetworks)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		return failed("the WorkloadEndpoint has other addresses", fmt.Errorf("spec.ipNetworks %v, prevResult %v", got, want))
	}

	v := veth{hostIf: hostIf, ifName: a.ifName, netns: a.netns, mtu: s.conf.MTU, addrs: addrs}
	if err := v.verify(); err != nil {
		if errors.Is(err, errNoNetNS) {
			return netnsError(a.netns, err)
		}
		return failed("the interfaces are not as ADD left them", err)
	}

	src, err := s.addresses(true)
	if err == nil {
		err = src.check(ctx, a, addrs)
	}
	if err != nil {
		return failed("IPAM does not hold the addresses", err)
	}

	st, known, err := agent.NewStatusClient(s.socket).Endpoint(ctx, a.namespace, a.name)
	switch {
	case err != nil:
		return failed("the agent does not answer", err)
	case !known || !st.Programmed:
		return failed("the agent has not programmed the endpoint", fmt.Errorf("known=%v: %s", known, st.Problem))
	}
	return nil
}

// prevResult decodes the configuration's prevResult.
func (s *session) prevResult() (*types100.Result, error) {
	if s.conf.PrevResult == nil {
		return nil, cniError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult (the runtime sends the result of ADD)", nil)
	}
	raw, err := json.Marshal(s.conf.PrevResult)
	if err == nil {
		var r types.Result
		if r, err = version.NewResult(s.conf.CNIVersion, raw); err == nil {
			var res *types100.Result
			if res, err = types100.NewResultFromResult(r); err == nil {
				return res, nil
			}
		}
	}
	return nil, cniError(types.ErrDecodingFailure, "cannot decode prevResult", err)
}

// attachmentOf finds in a result the host-side interface and the
// workload's addresses.
func attachmentOf(r *types100.Result, a attachment) (string, []netip.Addr, error) {
	wl, hostIf := -1, ""
	for i, ifc := range r.Interfaces {
		switch {
		case ifc.Name == a.ifName && ifc.Sandbox == a.netns:
			wl = i
		case ifc.Sandbox == "" && hostIf == "":
			hostIf = ifc.Name
		}
	}
	if wl < 0 || hostIf == "" {
		return "", nil, fmt.Errorf("no interface %s in %s and host-side interface in %d interfaces", a.ifName, a.netns, len(r.Interfaces))
	}
	var ipcs []*types100.IPConfig
	for _, ipc := range r.IPs {
		if ipc.Interface == nil || *ipc.Interface == wl {
			ipcs = append(ipcs, ipc)
		}
	}
	addrs := addrsOf(ipcs)
	if len(addrs) == 0 {
		return "", nil, errors.New("no address")
	}
	return hostIf, addrs, nil
}
