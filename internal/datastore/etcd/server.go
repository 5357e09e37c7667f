package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ServerConfig configures the embedded single-member etcd server. Peer
// traffic is plain http on ListenPeerURLs; for several members run a real
// etcd cluster and point ClientConfig.Endpoints at it.
type ServerConfig struct {
	// Name is the member name. Default "tabby".
	Name string
	// DataDir holds etcd's write-ahead log and database. Required. A
	// server started again on the same DataDir keeps its data and
	// revisions.
	DataDir string
	// ListenClientURLs are where clients connect. Default
	// [DefaultEndpoint]. https URLs need CertFile and KeyFile.
	ListenClientURLs []string
	// AdvertiseClientURLs are the URLs the member publishes for clients.
	// Default ListenClientURLs; required when those listen on an
	// unspecified address such as 0.0.0.0.
	AdvertiseClientURLs []string
	// ListenPeerURLs is where raft peer traffic is served (http only).
	// Default ["http://127.0.0.1:2380"].
	ListenPeerURLs []string
	// CertFile and KeyFile are the PEM server certificate and key for
	// https client URLs. The certificate must also allow client
	// authentication: etcd's gRPC gateway dials the server with it.
	CertFile string
	KeyFile  string
	// TrustedCAFile is the PEM CA bundle that verifies client
	// certificates; required by ClientCertAuth.
	TrustedCAFile string
	// ClientCertAuth makes the server require a client certificate signed
	// by TrustedCAFile.
	ClientCertAuth bool
	// AutoCompactionRetention is how much history etcd keeps: it compacts
	// periodically (etcd's "periodic" mode) everything older than this.
	// A watcher away for less than this resumes without EventResync.
	// Default 1h.
	AutoCompactionRetention time.Duration
	// QuotaBackendBytes is the size at which the database raises a NOSPACE
	// alarm and refuses writes. Default 2 GiB (etcd's default); at most
	// 8 GiB.
	QuotaBackendBytes int64
	// LogLevel is the lowest level of etcd's own messages passed to the
	// logger: "debug", "info", "warn" or "error". Default "error".
	LogLevel string
	// StartTimeout bounds how long StartServer waits for the server to
	// be ready. Default 1m.
	StartTimeout time.Duration
}

// Defaults fills in the zero fields.
func (c *ServerConfig) Defaults() {
	if c.Name == "" {
		c.Name = "tabby"
	}
	if len(c.ListenClientURLs) == 0 {
		c.ListenClientURLs = []string{DefaultEndpoint}
	}
	if len(c.AdvertiseClientURLs) == 0 {
		c.AdvertiseClientURLs = c.ListenClientURLs
	}
	if len(c.ListenPeerURLs) == 0 {
		c.ListenPeerURLs = []string{"http://127.0.0.1:2380"}
	}
	if c.AutoCompactionRetention == 0 {
		c.AutoCompactionRetention = time.Hour
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = 2 << 30
	}
	if c.LogLevel == "" {
		c.LogLevel = "error"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = time.Minute
	}
}

// Validate reports every invalid field; each error names its field.
func (c *ServerConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, fieldErr("Name", "empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, fieldErr("DataDir", "empty"))
	}
	clientSchemes, unspecified, err := checkURLs("ListenClientURLs", c.ListenClientURLs, "http", "https")
	errs = append(errs, err)
	_, advUnspecified, err := checkURLs("AdvertiseClientURLs", c.AdvertiseClientURLs, "http", "https")
	errs = append(errs, err)
	if unspecified && advUnspecified {
		errs = append(errs, fieldErr("AdvertiseClientURLs", "must name a reachable address when ListenClientURLs listen on an unspecified address"))
	}
	_, _, err = checkURLs("ListenPeerURLs", c.ListenPeerURLs, "http")
	errs = append(errs, err)

	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fieldErr("CertFile, KeyFile", "set both or neither"))
	}
	if clientSchemes["https"] && c.CertFile == "" {
		errs = append(errs, fieldErr("CertFile", "required by https ListenClientURLs"))
	}
	if clientSchemes["http"] && c.CertFile != "" {
		errs = append(errs, fieldErr("CertFile", "set, but ListenClientURLs use http"))
	}
	if c.ClientCertAuth && c.TrustedCAFile == "" {
		errs = append(errs, fieldErr("TrustedCAFile", "required by ClientCertAuth"))
	}
	if c.ClientCertAuth && !clientSchemes["https"] {
		errs = append(errs, fieldErr("ClientCertAuth", "needs https ListenClientURLs"))
	}
	if c.AutoCompactionRetention < 0 {
		errs = append(errs, fieldErr("AutoCompactionRetention", "%v is negative", c.AutoCompactionRetention))
	}
	if c.QuotaBackendBytes < 0 || c.QuotaBackendBytes > 8<<30 {
		errs = append(errs, fieldErr("QuotaBackendBytes", "%d is not between 0 and 8 GiB", c.QuotaBackendBytes))
	}
	if _, err := parseZapLevel(c.LogLevel); err != nil {
		errs = append(errs, fieldErr("LogLevel", "%v", err))
	}
	if c.StartTimeout < 0 {
		errs = append(errs, fieldErr("StartTimeout", "%v is negative", c.StartTimeout))
	}
	return errors.Join(errs...)
}

// checkURLs checks that urls are non-empty and scheme://host:port with
// one of schemes. It returns the schemes used and whether any host is an
// unspecified address.
func checkURLs(field string, urls []string, schemes ...string) (map[string]bool, bool, error) {
	if len(urls) == 0 {
		return nil, false, fmt.Errorf("%s: empty", field)
	}
	used := map[string]bool{}
	unspecified := false
	var errs []error
	for i, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
			continue
		}
		ok := false
		for _, sc := range schemes {
			ok = ok || u.Scheme == sc
		}
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s[%d]: %q: scheme must be one of %v", field, i, s, schemes))
		case u.Hostname() == "" || u.Port() == "":
			errs = append(errs, fmt.Errorf("%s[%d]: %q: want scheme://host:port", field, i, s))
		case u.Path != "" && u.Path != "/":
			errs = append(errs, fmt.Errorf("%s[%d]: %q: must not have a path", field, i, s))
		default:
			used[u.Scheme] = true
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
				unspecified = true
			}
		}
	}
	if len(used) > 1 {
		errs = append(errs, fmt.Errorf("%s: mixes schemes", field))
	}
	return used, unspecified, errors.Join(errs...)
}

// Server is a running embedded etcd member.
type Server struct {
	etcd  *embed.Etcd
	quiet *atomic.Bool // set while closing, see newZapLogger
	urls  []string
	errc  chan error

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{} // closed when the error forwarder ends
}

// StartServer starts a single-member etcd with cfg (after cfg.Defaults)
// and returns once it is ready to serve, or fails after
// cfg.StartTimeout. ctx bounds only the start; stop the server with
// Close. etcd's own log messages at cfg.LogLevel and above go to log.
func StartServer(ctx context.Context, cfg ServerConfig, log *slog.Logger) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcd server config: %w", err)
	}
	quiet := new(atomic.Bool)
	ec, err := embedConfig(cfg, newZapLogger(log, level(cfg.LogLevel), quiet))
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting etcd in %s: %w", cfg.DataDir, err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		quiet.Store(true)
		e.Close()
		return nil, fmt.Errorf("starting etcd in %s: %w", cfg.DataDir, err)
	case <-timer.C:
		quiet.Store(true)
		e.Close()
		return nil, fmt.Errorf("starting etcd in %s: not ready after %v", cfg.DataDir, cfg.StartTimeout)
	case <-ctx.Done():
		quiet.Store(true)
		e.Close()
		return nil, fmt.Errorf("starting etcd in %s: %w", cfg.DataDir, ctx.Err())
	}
	s := &Server{
		etcd:    e,
		quiet:   quiet,
		urls:    append([]string(nil), cfg.AdvertiseClientURLs...),
		errc:    make(chan error, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.forwardErrors()
	log.Info("etcd server ready", "name", cfg.Name, "data_dir", cfg.DataDir, "client_urls", s.urls)
	return s, nil
}

// level returns the parsed LogLevel of a validated config.
func level(s string) zapcore.Level {
	l, _ := parseZapLevel(s)
	return l
}

func embedConfig(cfg ServerConfig, lg *zap.Logger) (*embed.Config, error) {
	var err error
	parse := func(field string, ss []string) ([]url.URL, error) {
		out := make([]url.URL, len(ss))
		for i, s := range ss {
			u, err := url.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
			}
			out[i] = *u
		}
		return out, nil
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	if ec.ListenClientUrls, err = parse("ListenClientURLs", cfg.ListenClientURLs); err != nil {
		return nil, err
	}
	if ec.AdvertiseClientUrls, err = parse("AdvertiseClientURLs", cfg.AdvertiseClientURLs); err != nil {
		return nil, err
	}
	if ec.ListenPeerUrls, err = parse("ListenPeerURLs", cfg.ListenPeerURLs); err != nil {
		return nil, err
	}
	ec.AdvertisePeerUrls = ec.ListenPeerUrls
	ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	ec.InitialClusterToken = "tabby-" + cfg.Name
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.ClientTLSInfo = transport.TLSInfo{
		CertFile:       cfg.CertFile,
		KeyFile:        cfg.KeyFile,
		TrustedCAFile:  cfg.TrustedCAFile,
		ClientCertAuth: cfg.ClientCertAuth,
	}
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = cfg.AutoCompactionRetention.String()
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.Logger = "zap"
	ec.LogLevel = cfg.LogLevel
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	return ec, nil
}

// forwardErrors passes the first error of the running server to Err.
func (s *Server) forwardErrors() {
	defer close(s.done)
	defer close(s.errc)
	select {
	case err := <-s.etcd.Err():
		select {
		case <-s.closing:
			return
		default:
		}
		if err == nil {
			err = errors.New("etcd stopped serving")
		}
		s.errc <- fmt.Errorf("etcd server: %w", err)
	case <-s.etcd.Server.StopNotify():
		select {
		case <-s.closing:
		default:
			s.errc <- errors.New("etcd server stopped")
		}
	case <-s.closing:
	}
}

// ClientURLs returns the URLs clients use to reach the server (its
// advertised client URLs), for ClientConfig.Endpoints.
func (s *Server) ClientURLs() []string { return append([]string(nil), s.urls...) }

// Err returns a channel that receives an error if the server fails while
// running; it is closed when the server stops, by failure or Close. Use
// it to end a process that serves etcd: select on it and on ctx.Done().
func (s *Server) Err() <-chan error { return s.errc }

// Close stops the server and waits until it has stopped. Clients with
// open watches can make this take several seconds: etcd lets running
// requests finish first. Idempotent; safe for concurrent use.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.quiet.Store(true)
		s.etcd.Close()
	})
	<-s.done
}
