package cni

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// cmdGC removes the network's attachments on this node that
// cni.dev/valid-attachments does not list (none listed: all of them): for
// each such WorkloadEndpoint it deletes the host side, the endpoint and the
// addresses. Then it releases IPAM handles of the network on this node
// that no valid attachment has (left by an ADD that died half-way), or
// passes GC on to the delegated IPAM plugin.
func (p *plugin) cmdGC(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, true)
	if err != nil {
		return err
	}
	defer s.close()
	ctx := s.ctx
	log := s.log.With("cmd", "GC", "network", s.conf.Name)
	valid := map[types.GCAttachment]bool{}
	validHandles := map[string]bool{}
	for _, va := range s.conf.ValidAttachments {
		valid[va] = true
		validHandles[HandleID(s.conf.Name, va.ContainerID, va.IfName)] = true
	}

	objs, _, err := s.client.List(ctx, wepKind, "")
	if err != nil {
		return datastoreError(nil, err)
	}
	src, err := s.addresses(true)
	if err != nil {
		return ipamError(err)
	}
	var errs []error
	removed := 0
	for _, obj := range objs {
		w, ok := obj.(*v1.WorkloadEndpoint)
		if !ok || w.Spec.Node != s.node || w.Metadata.Annotations[AnnotationNetwork] != s.conf.Name {
			continue
		}
		if valid[types.GCAttachment{ContainerID: w.Spec.ContainerID, IfName: w.Spec.Endpoint}] {
			continue
		}
		a := attachment{
			network: s.conf.Name, node: s.node, containerID: w.Spec.ContainerID, ifName: w.Spec.Endpoint,
			namespace: w.Metadata.Namespace, name: w.Metadata.Name,
		}
		log.Info("removing a stale attachment", "container", a.containerID, "iface", a.ifName, "endpoint", a.endpointID())
		v := veth{hostIf: w.Spec.InterfaceName}
		if err := v.tearDown(true); err != nil {
			errs = append(errs, err)
		}
		if _, err := s.deleteEndpoint(ctx, a); err != nil {
			errs = append(errs, err)
		}
		switch src := src.(type) {
		case delegatedIPAM:
			err = src.releaseOther(ctx, a.containerID, a.ifName)
		default:
			err = src.release(ctx, a)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("releasing the addresses of %s: %w", a.endpointID(), err))
		}
		removed++
	}

	switch src := src.(type) {
	case *tabbyIPAM:
		released, err := src.gc(ctx, s.conf.Name, validHandles)
		if err != nil {
			errs = append(errs, err)
		}
		if len(released) > 0 {
			log.Info("released IPAM handles without a valid attachment", "handles", released)
		}
	case delegatedIPAM:
		if err := invoke.DelegateGC(ctx, src.typ, s.stdin, nil); err != nil {
			errs = append(errs, fmt.Errorf("IPAM plugin %s: %w", src.typ, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("GC failed", "err", err)
		return cniError(types.ErrInternal, "GC could not remove every stale attachment; it tries again next time", err)
	}
	log.Info("GC done", "removed", removed)
	return nil
}
