package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/datastore"
)

// DefaultConvergeTimeout bounds WaitConverged when ctx has no deadline.
const DefaultConvergeTimeout = 30 * time.Second

// WaitConverged waits until every node's agent has applied every change
// written to the lab's datastore before the call: it bumps the sync
// marker (agent.SyncMarkerKey, which every agent follows; the revision
// of that write is above every earlier write) and waits until every
// agent reports Status.AppliedRevision at least that revision. A node
// whose agent is not running counts as lagging. Without a deadline on
// ctx it gives up after DefaultConvergeTimeout, with an error naming the
// lagging nodes and what they report.
func WaitConverged(ctx context.Context, st *State) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConvergeTimeout)
		defer cancel()
	}
	c, err := connect(ctx, st)
	if err != nil {
		return fmt.Errorf("waiting for convergence: %w", err)
	}
	defer c.Store().Close()
	want, err := c.Store().Txn(ctx, []datastore.Op{{Type: datastore.OpPut, KV: datastore.KV{
		Key: agent.SyncMarkerKey, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano)),
	}}})
	if err != nil {
		return fmt.Errorf("waiting for convergence: writing the sync marker: %w", err)
	}
	pending := map[string]string{} // node → what it reports
	for _, n := range st.Nodes {
		pending[n.Name] = "no answer yet"
	}
	clients := map[string]*agent.StatusClient{}
	for _, n := range st.Nodes {
		clients[n.Name] = agent.NewStatusClient(n.Socket)
	}
	for {
		for _, n := range st.Nodes {
			if _, ok := pending[n.Name]; !ok {
				continue
			}
			s, err := clients[n.Name].Status(ctx)
			switch {
			case err != nil:
				// A request cut short by the deadline says nothing new:
				// keep what the agent reported before, if anything.
				if ctx.Err() == nil || pending[n.Name] == "no answer yet" {
					pending[n.Name] = err.Error()
				}
			case s.AppliedRevision >= want:
				delete(pending, n.Name)
			default:
				why := fmt.Sprintf("applied revision %d", s.AppliedRevision)
				if s.LastApplyError != "" {
					why += ", last apply failed: " + s.LastApplyError
				}
				pending[n.Name] = why
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var lag []string
			for _, n := range st.Nodes {
				if why, ok := pending[n.Name]; ok {
					lag = append(lag, fmt.Sprintf("%s (%s)", n.Name, why))
				}
			}
			cause := ctx.Err()
			if errors.Is(cause, context.DeadlineExceeded) {
				cause = errors.New("timed out")
			}
			return fmt.Errorf("lab %s did not converge to datastore revision %d: %v; lagging: %s",
				st.Name, want, cause, strings.Join(lag, ", "))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
