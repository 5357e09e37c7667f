package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// DefaultEndpoint is where the embedded server listens by default.
const DefaultEndpoint = "http://127.0.0.1:2379"

// ClientConfig says how to reach etcd. The zero value after Defaults
// reaches the embedded server on its default address.
type ClientConfig struct {
	// Endpoints are the client URLs of the etcd members, all http:// or
	// all https://. Default [DefaultEndpoint]. For a 3- or 5-member
	// cluster list every member.
	Endpoints []string
	// CertFile and KeyFile are the PEM client certificate and key
	// presented to etcd (for --client-cert-auth). Both or neither.
	CertFile string
	KeyFile  string
	// CAFile is the PEM CA bundle that verifies the members' server
	// certificates; empty means the system roots. Only for https.
	CAFile string
	// DialTimeout bounds New's first contact with etcd and each
	// connection attempt. Default 5s.
	DialTimeout time.Duration
}

// Defaults fills in the zero fields.
func (c *ClientConfig) Defaults() {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultEndpoint}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
}

// Validate reports every invalid field; each error names its field.
func (c *ClientConfig) Validate() error {
	var errs []error
	schemes, _, err := checkURLs("Endpoints", c.Endpoints, "http", "https")
	errs = append(errs, err)
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fieldErr("CertFile, KeyFile", "set both or neither"))
	}
	if schemes["http"] {
		if c.CertFile != "" {
			errs = append(errs, fieldErr("CertFile", "set, but Endpoints use http"))
		}
		if c.CAFile != "" {
			errs = append(errs, fieldErr("CAFile", "set, but Endpoints use http"))
		}
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fieldErr("DialTimeout", "%v is negative", c.DialTimeout))
	}
	return errors.Join(errs...)
}

// tlsConfig returns the TLS configuration for https endpoints, or nil for
// plain http.
func (c *ClientConfig) tlsConfig() (*tls.Config, error) {
	https := false
	for _, ep := range c.Endpoints {
		if u, err := url.Parse(ep); err == nil && u.Scheme == "https" {
			https = true
		}
	}
	if !https {
		return nil, nil
	}
	// Without CAFile the system roots verify the server.
	info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading TLS files (CertFile %q, KeyFile %q, CAFile %q): %w", c.CertFile, c.KeyFile, c.CAFile, err)
	}
	return cfg, nil
}

// fieldErr returns an error about the configuration field named field.
func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}
