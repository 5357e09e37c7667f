package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
)

func TestClientConfigDefaults(t *testing.T) {
	var c etcd.ClientConfig
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0] != etcd.DefaultEndpoint || c.DialTimeout <= 0 {
		t.Errorf("defaults: %+v", c)
	}
}

// checkFields checks that err names every field in want.
func checkFields(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want errors naming %v", what, want)
		return
	}
	for _, f := range want {
		if !strings.Contains(err.Error(), f+":") && !strings.Contains(err.Error(), f+"[") && !strings.Contains(err.Error(), f+",") {
			t.Errorf("%s: error %q does not name %s", what, err, f)
		}
	}
}

func TestClientConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		cfg    etcd.ClientConfig
		fields []string
	}{
		{"no endpoints", etcd.ClientConfig{DialTimeout: time.Second}, []string{"Endpoints"}},
		{"bad scheme", etcd.ClientConfig{Endpoints: []string{"tcp://127.0.0.1:2379"}}, []string{"Endpoints"}},
		{"no port", etcd.ClientConfig{Endpoints: []string{"http://127.0.0.1"}}, []string{"Endpoints"}},
		{"mixed schemes", etcd.ClientConfig{Endpoints: []string{"http://a:1", "https://b:1"}}, []string{"Endpoints"}},
		{"cert without key", etcd.ClientConfig{Endpoints: []string{"https://a:1"}, CertFile: "c.pem"}, []string{"CertFile", "KeyFile"}},
		{"tls files with http", etcd.ClientConfig{Endpoints: []string{"http://a:1"}, CertFile: "c", KeyFile: "k", CAFile: "ca"}, []string{"CertFile", "CAFile"}},
		{"negative timeout", etcd.ClientConfig{Endpoints: []string{"http://a:1"}, DialTimeout: -time.Second}, []string{"DialTimeout"}},
		{"everything", etcd.ClientConfig{Endpoints: []string{"ftp://x"}, KeyFile: "k", DialTimeout: -1}, []string{"Endpoints", "CertFile", "DialTimeout"}},
	}
	for _, tt := range tests {
		checkFields(t, tt.name, tt.cfg.Validate(), tt.fields...)
	}
	ok := etcd.ClientConfig{Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"},
		CertFile: "c", KeyFile: "k", CAFile: "ca", DialTimeout: time.Second}
	if err := ok.Validate(); err != nil {
		t.Errorf("3-member https config: %v", err)
	}
}

func TestServerConfigValidate(t *testing.T) {
	valid := func() etcd.ServerConfig {
		c := etcd.ServerConfig{DataDir: "/var/lib/tabby/etcd"}
		c.Defaults()
		return c
	}
	if c := valid(); c.Validate() != nil {
		t.Fatalf("defaults do not validate: %v", c.Validate())
	}
	tests := []struct {
		name   string
		change func(*etcd.ServerConfig)
		fields []string
	}{
		{"no data dir", func(c *etcd.ServerConfig) { c.DataDir = "" }, []string{"DataDir"}},
		{"bad client URL", func(c *etcd.ServerConfig) { c.ListenClientURLs = []string{"unix:///x"} }, []string{"ListenClientURLs"}},
		{"https peer", func(c *etcd.ServerConfig) { c.ListenPeerURLs = []string{"https://127.0.0.1:2380"} }, []string{"ListenPeerURLs"}},
		{"https without cert", func(c *etcd.ServerConfig) {
			c.ListenClientURLs = []string{"https://127.0.0.1:2379"}
			c.AdvertiseClientURLs = c.ListenClientURLs
		}, []string{"CertFile"}},
		{"client cert auth without CA or https", func(c *etcd.ServerConfig) { c.ClientCertAuth = true }, []string{"TrustedCAFile", "ClientCertAuth"}},
		{"unspecified address advertised", func(c *etcd.ServerConfig) {
			c.ListenClientURLs = []string{"http://0.0.0.0:2379"}
			c.AdvertiseClientURLs = c.ListenClientURLs
		}, []string{"AdvertiseClientURLs"}},
		{"negative retention", func(c *etcd.ServerConfig) { c.AutoCompactionRetention = -time.Hour }, []string{"AutoCompactionRetention"}},
		{"huge quota", func(c *etcd.ServerConfig) { c.QuotaBackendBytes = 100 << 30 }, []string{"QuotaBackendBytes"}},
		{"bad log level", func(c *etcd.ServerConfig) { c.LogLevel = "loud" }, []string{"LogLevel"}},
		{"several at once", func(c *etcd.ServerConfig) { c.DataDir, c.Name, c.StartTimeout = "", "", -1 }, []string{"DataDir", "Name", "StartTimeout"}},
	}
	for _, tt := range tests {
		c := valid()
		tt.change(&c)
		checkFields(t, tt.name, c.Validate(), tt.fields...)
	}
	c := etcd.ServerConfig{DataDir: "/d", ListenClientURLs: []string{"http://0.0.0.0:2379"}, AdvertiseClientURLs: []string{"http://10.0.0.1:2379"}}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Errorf("listening on 0.0.0.0 with an advertised address: %v", err)
	}
}

// writePEM writes one PEM block to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue creates a key and a certificate for tmpl signed by parent (self-
// signed if parent is nil) and writes name.pem and name-key.pem.
func issue(t *testing.T, dir, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}

// TestTLSClientCertificates starts a server that requires client
// certificates; a client without one is refused, a client with one works.
func TestTLSClientCertificates(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey, caFile, _ := issue(t, dir, "ca", &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tabby test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	_, _, serverCert, serverKey := issue(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "etcd"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// etcd's gRPC gateway dials the server with the server certificate.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	_, _, clientCert, clientKey := issue(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "tabby-agent"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)

	cfg := etcdtest.ServerConfig(t)
	cfg.ListenClientURLs = []string{strings.Replace(cfg.ListenClientURLs[0], "http://", "https://", 1)}
	cfg.CertFile, cfg.KeyFile, cfg.TrustedCAFile, cfg.ClientCertAuth = serverCert, serverKey, caFile, true
	_, cc := etcdtest.StartServer(t, cfg)
	cc.CAFile = caFile
	good := cc
	cc.DialTimeout = time.Second // for the clients that must fail

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if s, err := etcd.New(ctx, cc, etcdtest.Logger()); err == nil {
		s.Close()
		t.Error("connected without a client certificate")
	} else {
		t.Logf("without a client certificate: %v", err)
	}

	noCA := cc
	noCA.CAFile = ""
	noCA.CertFile, noCA.KeyFile = clientCert, clientKey
	if s, err := etcd.New(ctx, noCA, etcdtest.Logger()); err == nil {
		s.Close()
		t.Error("connected without trusting the server's CA")
	}

	good.CertFile, good.KeyFile = clientCert, clientKey
	s := etcdtest.NewStore(t, good)
	k := datastore.Key{Kind: "node", Name: "n1"}
	kv, err := s.Create(ctx, datastore.KV{Key: k, Value: []byte("secure")})
	if err != nil {
		t.Fatalf("Create over TLS: %v", err)
	}
	got, err := s.Get(ctx, k)
	if err != nil || string(got.Value) != "secure" || got.Revision != kv.Revision {
		t.Errorf("Get over TLS = %+v, %v", got, err)
	}
}
