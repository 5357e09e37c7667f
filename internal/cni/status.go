package cni

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/agent"
)

// cmdStatus reports whether the plugin can ADD: the datastore answers and
// the node's agent is ready (in sync, datastore reachable, last apply
// succeeded). Not ready is error 50 (plugin not available).
func (p *plugin) cmdStatus(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, true)
	if err != nil {
		return notAvailable(err)
	}
	defer s.close()
	if err := s.probeDatastore(s.ctx); err != nil {
		return cniError(types.ErrPluginNotAvailable, "the datastore does not answer; check etcd and the datastore settings", err)
	}
	st, err := agent.NewStatusClient(s.socket).Status(s.ctx)
	if err != nil {
		return cniError(types.ErrPluginNotAvailable, fmt.Sprintf("the agent of node %q does not answer on %s; start `tabby agent --node %s`", s.node, s.socket, s.node), err)
	}
	if !st.Ready {
		return cniError(types.ErrPluginNotAvailable, fmt.Sprintf("the agent of node %q is not ready; see `tabby node status` and the agent's log", s.node),
			fmt.Errorf("inSync=%v datastoreOK=%v lastApplyError=%q", st.InSync, st.DatastoreOK, st.LastApplyError))
	}
	if !s.conf.IPAM.Tabby() {
		if err := invoke.DelegateStatus(s.ctx, s.conf.IPAM.Type, s.stdin, nil); err != nil {
			return err
		}
	}
	return nil
}

// notAvailable turns "try again later" (the datastore is unreachable)
// into STATUS's "plugin not available".
func notAvailable(err error) error {
	var te *types.Error
	if errors.As(err, &te) && te.Code == types.ErrTryAgainLater {
		te.Code = types.ErrPluginNotAvailable
	}
	return err
}
