package cni

import (
	"context"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
)

// Polling the agent's status socket: every 3 ms for the first 30 ms (an
// idle agent programs an endpoint 10-15 ms after it was written: it batches
// changes for 10 ms), then every 10 ms.
const (
	pollFast     = 3 * time.Millisecond
	pollFastFor  = 30 * time.Millisecond
	pollInterval = 10 * time.Millisecond
)

// waitProgrammed waits until the node's agent reports the attachment's
// endpoint programmed at revision rev or later: its interface configured,
// its routes in place and its policy in nftables. It gives up after
// policy_timeout with a CNI error that says what the agent last reported.
func (s *session) waitProgrammed(ctx context.Context, a attachment, rev int64) error {
	timeout := s.conf.PolicyTimeout.Duration
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := agent.NewStatusClient(s.socket)
	start := time.Now()
	var last string
	for {
		st, known, err := client.Endpoint(ctx, a.namespace, a.name)
		switch {
		case err != nil:
			last = err.Error()
		case !known:
			last = "the agent does not know the endpoint yet"
		case st.Revision < rev:
			last = fmt.Sprintf("the agent has revision %d of the endpoint, not yet %d", st.Revision, rev)
		case !st.Programmed:
			last = "not programmed: " + st.Problem
		default:
			return nil
		}
		interval := pollInterval
		if time.Since(start) < pollFastFor {
			interval = pollFast
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return cniError(CodePolicyTimeout, fmt.Sprintf(
				"the agent of node %q did not program endpoint %s/%s within policy_timeout (%v), so its policy is not in force; "+
					"check that `tabby agent --node %s` runs and is ready (tabby node status) and that its status socket is %s, or raise policy_timeout",
				s.node, a.namespace, a.name, timeout, s.node, s.socket), fmt.Errorf("last status: %s", last))
		case <-t.C:
		}
	}
}
