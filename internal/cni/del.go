package cni

import (
	"errors"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/dataplane/links"
)

// cmdDel removes the attachment. It is idempotent: a missing namespace,
// link, endpoint or address counts as removed. The endpoint and the host
// side are left alone when the endpoint now belongs to another container
// (a newer sandbox of the same pod).
func (p *plugin) cmdDel(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, true)
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	ctx := s.ctx
	a := newAttachment(s.conf.Name, s.node, args.ContainerID, args.IfName, args.Netns, args.Args)
	log := s.log.With("cmd", "DEL", "container", a.containerID, "iface", a.ifName, "endpoint", a.endpointID())

	w, err := s.endpoint(ctx, a)
	if err != nil {
		return datastoreError(nil, err)
	}
	ours := w == nil || w.Spec.ContainerID == a.containerID
	hostIf := ""
	switch {
	case w != nil && ours:
		hostIf = w.Spec.InterfaceName
	case w == nil:
		prefix, err := s.interfacePrefix(ctx)
		if err != nil {
			return datastoreError(nil, err)
		}
		hostIf = links.InterfaceName(prefix, a.endpointID())
	}
	var errs []error
	v := veth{hostIf: hostIf, ifName: a.ifName, netns: a.netns}
	if err := v.tearDown(ours); err != nil {
		errs = append(errs, asCNIError("removing the workload's interface failed", err))
	}
	if w != nil && ours {
		if _, err := s.deleteEndpoint(ctx, a); err != nil {
			errs = append(errs, cniError(types.ErrTryAgainLater, "deleting the WorkloadEndpoint failed; DEL again", err))
		}
	}
	src, err := s.addresses(true)
	if err == nil {
		err = src.release(ctx, a)
	}
	if err != nil {
		errs = append(errs, ipamError(err))
	}
	if len(errs) > 0 {
		log.Error("DEL failed", "err", errors.Join(errs...))
		return errs[0]
	}
	log.Info("DEL done", "endpointWasOurs", ours, "took", time.Since(start))
	return nil
}
