package cni

import (
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// ipamPlugin is the tabby-ipam plugin: Tabby's IPAM for a main plugin
// that delegates to it. It reads Tabby's top-level fields (datastore,
// nodename, …) and ignores the main plugin's; its ipam section is parsed
// strictly. The handle is HandleID(network, container, interface).
type ipamPlugin struct{}

// openIPAM opens a session for the IPAM plugin and its IPAM.
func openIPAM(stdin []byte) (*session, *tabbyIPAM, error) {
	s, err := openSession(stdin, false)
	if err != nil {
		return nil, nil, err
	}
	if !s.conf.IPAM.Tabby() {
		s.close()
		return nil, nil, configError(fmt.Errorf("ipam.type: %q: the tabby-ipam plugin serves ipam.type %q", s.conf.IPAM.Type, IPAMPluginType))
	}
	t, err := newTabbyIPAM(s.client.Store(), s.conf.IPAM, s.node, lockPath(s.socket), false, s.log)
	if err != nil {
		s.close()
		return nil, nil, ipamError(err)
	}
	return s, t, nil
}

func (p *ipamPlugin) attachment(s *session, args *skel.CmdArgs) attachment {
	return attachment{network: s.conf.Name, node: s.node, containerID: args.ContainerID, ifName: args.IfName}
}

func (p *ipamPlugin) cmdAdd(args *skel.CmdArgs) error {
	s, t, err := openIPAM(args.StdinData)
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	a := p.attachment(s, args)
	addrs, _, err := t.assign(s.ctx, a)
	if err != nil {
		return ipamError(err)
	}
	s.log.Info("IPAM ADD done", "handle", a.handle(), "addresses", fmt.Sprint(addrs), "took", time.Since(start))
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, IPs: ipConfigs(addrs, nil, false), DNS: s.conf.DNS}
	return s.printResult(r)
}

func (p *ipamPlugin) cmdDel(args *skel.CmdArgs) error {
	s, t, err := openIPAM(args.StdinData)
	if err != nil {
		return err
	}
	defer s.close()
	if err := t.release(s.ctx, p.attachment(s, args)); err != nil {
		return ipamError(err)
	}
	return nil
}

func (p *ipamPlugin) cmdCheck(args *skel.CmdArgs) error {
	s, t, err := openIPAM(args.StdinData)
	if err != nil {
		return err
	}
	defer s.close()
	prev, err := s.prevResult()
	if err != nil {
		return err
	}
	a := p.attachment(s, args)
	var ipam []*types100.IPConfig
	for _, ipc := range prev.IPs {
		// Addresses of this attachment's interface (or of no interface).
		if ipc.Interface == nil || (*ipc.Interface < len(prev.Interfaces) && prev.Interfaces[*ipc.Interface].Name == a.ifName) {
			ipam = append(ipam, ipc)
		}
	}
	if err := t.check(s.ctx, a, addrsOf(ipam)); err != nil {
		return cniError(types.ErrInternal, "CHECK: IPAM does not hold the addresses; DEL and ADD the container again", err)
	}
	return nil
}

func (p *ipamPlugin) cmdGC(args *skel.CmdArgs) error {
	s, t, err := openIPAM(args.StdinData)
	if err != nil {
		return err
	}
	defer s.close()
	valid := map[string]bool{}
	for _, va := range s.conf.ValidAttachments {
		valid[HandleID(s.conf.Name, va.ContainerID, va.IfName)] = true
	}
	released, err := t.gc(s.ctx, s.conf.Name, valid)
	if err != nil {
		return cniError(types.ErrInternal, "GC could not release every stale handle; it tries again next time", err)
	}
	s.log.Info("IPAM GC done", "released", released)
	return nil
}

func (p *ipamPlugin) cmdStatus(args *skel.CmdArgs) error {
	s, _, err := openIPAM(args.StdinData)
	if err != nil {
		return notAvailable(err)
	}
	defer s.close()
	if err := s.probeDatastore(s.ctx); err != nil {
		return cniError(types.ErrPluginNotAvailable, "the datastore does not answer; check etcd and the datastore settings", err)
	}
	return nil
}
