package cni

import (
	"context"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
)

// Waiting for the agent: each request is a long poll of up to longPoll
// (the agent answers the moment the endpoint is programmed); an answer
// that comes back sooner without the endpoint programmed (an agent that
// does not wait, or one that restarted) is retried after retryInterval.
const (
	longPoll      = 5 * time.Second
	retryInterval = 10 * time.Millisecond
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
	last := "no answer from the agent"
	for {
		asked := time.Now()
		wait := longPoll
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		st, known, err := client.WaitEndpoint(ctx, a.namespace, a.name, rev, wait)
		switch {
		case err != nil:
			if ctx.Err() == nil { // else keep what the agent said last
				last = err.Error()
			}
		case !known:
			last = "the agent does not know the endpoint yet"
		case st.Revision < rev:
			last = fmt.Sprintf("the agent has revision %d of the endpoint, not yet %d", st.Revision, rev)
		case !st.Programmed:
			last = "not programmed: " + st.Problem
		default:
			return nil
		}
		interval := time.Duration(0)
		if time.Since(asked) < retryInterval {
			interval = retryInterval
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
