package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"
)

// StatusSocketPath is where the agent of node serves its status by default.
func StatusSocketPath(node string) string {
	return filepath.Join("/run/tabby", node, "agent.sock")
}

// StatusClient reads a local agent's status over its unix socket. The CNI
// plugin uses it to wait until an endpoint is programmed, and `tabby node
// status` to show BGP sessions. It is safe for concurrent use.
type StatusClient struct {
	socket string
	http   *http.Client
}

// NewStatusClient returns a client for the agent socket at path.
func NewStatusClient(path string) *StatusClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &StatusClient{socket: path, http: &http.Client{Transport: tr}}
}

func (c *StatusClient) get(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("asking the agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusServiceUnavailable {
		return resp.StatusCode, fmt.Errorf("asking the agent at %s: %s", c.socket, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("asking the agent at %s: %w", c.socket, err)
	}
	return resp.StatusCode, nil
}

// Status returns the agent's overall status.
func (c *StatusClient) Status(ctx context.Context) (Status, error) {
	var s Status
	_, err := c.get(ctx, "/v1/status", &s)
	return s, err
}

// Endpoint returns the status of one workload endpoint; known is false
// when the agent has not seen it (yet).
func (c *StatusClient) Endpoint(ctx context.Context, namespace, name string) (st EndpointStatus, known bool, err error) {
	code, err := c.get(ctx, "/v1/endpoints/"+url.PathEscape(namespace)+"/"+url.PathEscape(name), &st)
	return st, code == http.StatusOK, err
}

// WaitEndpoint is Endpoint, but the agent answers only once the endpoint
// is programmed at revision minRev or later, or after wait. An agent that
// predates waiting answers at once, so callers still check the answer.
func (c *StatusClient) WaitEndpoint(ctx context.Context, namespace, name string, minRev int64, wait time.Duration) (st EndpointStatus, known bool, err error) {
	q := url.Values{"wait": {wait.String()}, "minRevision": {strconv.FormatInt(minRev, 10)}}
	code, err := c.get(ctx, "/v1/endpoints/"+url.PathEscape(namespace)+"/"+url.PathEscape(name)+"?"+q.Encode(), &st)
	return st, code == http.StatusOK, err
}

// BGP returns the node's BGP sessions.
func (c *StatusClient) BGP(ctx context.Context) ([]BGPPeerStatus, error) {
	var peers []BGPPeerStatus
	_, err := c.get(ctx, "/v1/bgp", &peers)
	return peers, err
}
