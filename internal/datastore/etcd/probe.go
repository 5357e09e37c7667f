package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// probeTimeout bounds each step of probe.
const probeTimeout = time.Second

// probe connects to each endpoint, with a TLS handshake if tlsCfg is set,
// and returns what went wrong, to explain why the etcd client (which only
// reports a timeout) could not connect. It returns nil if every endpoint
// accepts the connection.
func probe(ctx context.Context, endpoints []string, tlsCfg *tls.Config) error {
	var errs []error
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			continue
		}
		if err := probeOne(ctx, u.Host, tlsCfg); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		}
	}
	return errors.Join(errs...)
}

func probeOne(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	if tlsCfg == nil {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	cfg := tlsCfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// With TLS 1.3 the server checks the client certificate after the
	// client's handshake is done; its verdict arrives as an alert.
	if err := conn.SetReadDeadline(time.Now().Add(probeTimeout / 4)); err != nil {
		return err
	}
	var b [1]byte
	_, err = conn.Read(b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}
