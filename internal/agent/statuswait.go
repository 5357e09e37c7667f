package agent

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tabbynet/tabby/internal/policy"
)

// maxStatusWait bounds how long one status request may wait.
const maxStatusWait = time.Minute

// endpointRequest answers GET /v1/endpoints/{namespace}/{name}. With the
// query parameters wait=DURATION and minRevision=N it is a long poll: it
// returns as soon as the endpoint is programmed at revision N or later, or
// when the wait is over (then with whatever the agent knows). A CNI plugin
// thus learns the moment its endpoint is programmed with one request,
// instead of polling: many plugins waiting at once would otherwise cost
// the node a lot of CPU in requests that answer "not yet".
func (b *statusBoard) endpointRequest(r *http.Request, id policy.EndpointID) (EndpointStatus, bool, error) {
	q := r.URL.Query()
	if q.Get("wait") == "" {
		e, ok := b.endpoint(id)
		return e, ok, nil
	}
	wait, err := time.ParseDuration(q.Get("wait"))
	if err != nil || wait < 0 {
		return EndpointStatus{}, false, fmt.Errorf("wait: %q: want a duration such as 5s", q.Get("wait"))
	}
	minRev, err := strconv.ParseInt(q.Get("minRevision"), 10, 64)
	if q.Get("minRevision") == "" {
		minRev, err = 0, nil
	}
	if err != nil {
		return EndpointStatus{}, false, fmt.Errorf("minRevision: %q: want an integer", q.Get("minRevision"))
	}
	ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxStatusWait))
	defer cancel()
	e, ok := b.waitEndpoint(ctx, id, minRev)
	return e, ok, nil
}

// waitEndpoint returns the endpoint's status once it is programmed at
// revision minRev or later, or when ctx ends.
func (b *statusBoard) waitEndpoint(ctx context.Context, id policy.EndpointID, minRev int64) (EndpointStatus, bool) {
	for {
		b.mu.Lock()
		e, ok := b.endpoints[id]
		changed := b.changed
		b.mu.Unlock()
		if ok && e.Programmed && e.Revision >= minRev {
			return e, ok
		}
		select {
		case <-ctx.Done():
			return e, ok
		case <-changed:
		}
	}
}
