// Package etcdtest starts embedded etcd servers for tests of any package:
// each in its own t.TempDir() on free loopback ports, stopped by
// t.Cleanup. etcd's own logs are discarded unless TABBY_TEST_ETCD_LOG is
// set (to "debug", "info", "warn" or "error"), which writes them to stderr.
package etcdtest

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// LogEnv names the environment variable that turns etcd's logs on.
const LogEnv = "TABBY_TEST_ETCD_LOG"

// Logger returns the logger the helpers give etcd: a discarding one, or
// stderr at the level LogEnv names.
func Logger() *slog.Logger {
	level := os.Getenv(LogEnv)
	if level == "" {
		return slog.New(slog.DiscardHandler)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// ServerConfig returns the configuration of a single-member server in a
// new t.TempDir() on two free loopback ports. Start it with StartServer,
// or change it first (for TLS, say).
func ServerConfig(t testing.TB) etcd.ServerConfig {
	t.Helper()
	cfg := etcd.ServerConfig{
		Name:             "test",
		DataDir:          filepath.Join(t.TempDir(), "etcd"), // etcd creates it 0700
		ListenClientURLs: []string{"http://" + freeAddr(t)},
		ListenPeerURLs:   []string{"http://" + freeAddr(t)},
		StartTimeout:     30 * time.Second,
	}
	if level := os.Getenv(LogEnv); level != "" {
		cfg.LogLevel = strings.ToLower(level)
	}
	return cfg
}

// StartServer starts a server with cfg and closes it with t.Cleanup. It
// returns the server and a ClientConfig that reaches it.
func StartServer(t testing.TB, cfg etcd.ServerConfig) (*etcd.Server, etcd.ClientConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcd.StartServer(ctx, cfg, Logger())
	if err != nil {
		t.Fatalf("starting embedded etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv, etcd.ClientConfig{Endpoints: srv.ClientURLs(), DialTimeout: 5 * time.Second}
}

// StartTestServer starts a plain-http single-member etcd in t.TempDir()
// on free loopback ports, closed by t.Cleanup. If the ports it picked
// were taken in the meantime it tries again with others.
func StartTestServer(t testing.TB) (*etcd.Server, etcd.ClientConfig) {
	t.Helper()
	var lastErr error
	for range 3 {
		cfg := ServerConfig(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		srv, err := etcd.StartServer(ctx, cfg, Logger())
		cancel()
		if err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "address already in use") {
				continue
			}
			break
		}
		t.Cleanup(srv.Close)
		return srv, etcd.ClientConfig{Endpoints: srv.ClientURLs(), DialTimeout: 5 * time.Second}
	}
	t.Fatalf("starting embedded etcd: %v", lastErr)
	return nil, etcd.ClientConfig{}
}

// NewStore connects a Store to cfg and closes it with t.Cleanup (which
// runs before the server's cleanup when the server was started first).
func NewStore(t testing.TB, cfg etcd.ClientConfig) *etcd.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcd.New(ctx, cfg, Logger())
	if err != nil {
		t.Fatalf("connecting to etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})
	return s
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
