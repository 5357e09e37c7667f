package cni

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

func flag(b bool) *Flag { f := Flag(b); return &f }

func TestParseNetConf(t *testing.T) {
	in := `{
	  "cniVersion": "1.1.0", "name": "net1", "type": "tabby",
	  "capabilities": {"portMappings": true},
	  "runtimeConfig": {"portMappings": []},
	  "args": {"cni": {"labels": [{"key": "app", "value": "web"}], "ips": ["10.0.0.1"]}, "other": 1},
	  "dns": {"nameservers": ["10.0.0.53"]},
	  "datastore": {"endpoints": ["https://10.0.0.1:2379"], "cert_file": "/c.pem", "key_file": "/k.pem", "ca_file": "/ca.pem"},
	  "nodename": "node-1", "nodename_file": "/var/lib/tabby/nodename", "mtu": 1400,
	  "policy_timeout": "3s", "log_file": "/var/log/tabby/cni.log", "log_level": "debug",
	  "agent_socket": "/run/tabby/node-1/agent.sock",
	  "ipam": {"type": "tabby-ipam", "assign_ipv4": "true", "assign_ipv6": true, "ipv4_pools": ["p4"], "ipv6_pools": ["p6"]},
	  "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
	}`
	c, err := ParseNetConf([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := &NetConf{
		CNIVersion: "1.1.0", Name: "net1", Type: "tabby",
		Capabilities: map[string]bool{"portMappings": true},
		DNS:          types.DNS{Nameservers: []string{"10.0.0.53"}},
		Labels:       []Label{{Key: "app", Value: "web"}},
		Datastore:    DatastoreConf{Endpoints: []string{"https://10.0.0.1:2379"}, CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem"},
		NodeName:     "node-1", NodeNameFile: "/var/lib/tabby/nodename", MTU: 1400,
		PolicyTimeout: Duration{3 * time.Second}, LogFile: "/var/log/tabby/cni.log", LogLevel: "debug",
		AgentSocket: "/run/tabby/node-1/agent.sock",
		IPAM: IPAMConf{Type: "tabby-ipam", AssignIPv4: flag(true), AssignIPv6: flag(true),
			IPv4Pools: []string{"p4"}, IPv6Pools: []string{"p6"}},
		ValidAttachments: []types.GCAttachment{{ContainerID: "c1", IfName: "eth0"}},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("ParseNetConf (-want +got):\n%s", diff)
	}
}

func TestNetConfDefaults(t *testing.T) {
	c, err := ParseNetConf([]byte(`{"cniVersion": "0.3.1", "name": "n", "type": "tabby"}`))
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := IPAMConf{Type: IPAMPluginType, AssignIPv4: flag(true), AssignIPv6: flag(false)}
	if diff := cmp.Diff(want, c.IPAM); diff != "" {
		t.Errorf("ipam defaults (-want +got):\n%s", diff)
	}
	if c.PolicyTimeout.Duration != DefaultPolicyTimeout || c.LogLevel != "info" {
		t.Errorf("defaults: policy_timeout %v, log_level %q", c.PolicyTimeout, c.LogLevel)
	}
	// A delegated IPAM section is the delegate's: not parsed, no Tabby defaults.
	c, err = ParseNetConf([]byte(`{"name": "n", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]], "assign_ipv4": 7}}`))
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if diff := cmp.Diff(IPAMConf{Type: "host-local"}, c.IPAM); diff != "" || c.IPAM.Tabby() {
		t.Errorf("delegated ipam (-want +got):\n%s", diff)
	}
}

// TestNetConfErrors checks that every error names its field.
func TestNetConfErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // substrings of the error
	}{
		{`[]`, []string{"not a JSON object"}},
		{`null`, []string{"not a JSON object"}},
		{`{"name": "n", "mtuu": 1500, "etcd_endpoints": "x"}`, []string{"etcd_endpoints: unknown field", "mtuu: unknown field"}},
		{`{"name": "n", "mtu": "1500"}`, []string{"mtu: want int, have a JSON string"}},
		{`{"name": "n", "datastore": {"endpoint": ["x"]}}`, []string{`datastore: unknown field "endpoint"`}},
		{`{"name": "n", "datastore": {"endpoints": "http://x"}}`, []string{"datastore: endpoints:"}},
		{`{"name": "n", "ipam": {"type": "tabby-ipam", "pools": ["a"]}}`, []string{`ipam: unknown field "pools"`}},
		{`{"name": "n", "ipam": {"assign_ipv4": "yes"}}`, []string{"ipam: ", `"yes" is not true or false`}},
		{`{"name": "n", "ipam": 3}`, []string{"ipam: must be an object"}},
		{`{"name": "n", "policy_timeout": 10}`, []string{"policy_timeout: 10 is not a duration"}},
		{`{"name": "n", "policy_timeout": "10"}`, []string{`policy_timeout: "10" is not a duration`}},
		{`{"name": "n", "args": {"cni": {"labels": [{"key": "a", "val": "b"}]}}}`, []string{`args: cni.labels: unknown field "val"`}},
		{`{"name": "n", "args": []}`, []string{"args: must be an object"}},
	} {
		_, err := ParseNetConf([]byte(tc.in))
		if err == nil {
			t.Errorf("ParseNetConf(%s) succeeded", tc.in)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseNetConf(%s) = %q, want it to contain %q", tc.in, err, w)
			}
		}
	}
}

func TestNetConfValidate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`{}`, []string{"name: must be set"}},
		{`{"name": "n", "ipam": {"assign_ipv4": false}}`, []string{"ipam: assign_ipv4 and assign_ipv6 are both false"}},
		{`{"name": "n", "ipam": {"ipv4_pools": ["10.0.0.0/8", ""]}}`, []string{"ipam.ipv4_pools[0]", "ipam.ipv4_pools[1]"}},
		{`{"name": "n", "datastore": {"endpoints": ["10.0.0.1:2379"], "cert_file": "/c"}}`,
			[]string{"datastore.endpoints[0]: \"10.0.0.1:2379\": must be an http", "datastore: cert_file and key_file"}},
		{`{"name": "n", "log_file": "cni.log", "agent_socket": "a.sock", "nodename_file": "x"}`,
			[]string{"log_file: \"cni.log\": must be an absolute path", "agent_socket:", "nodename_file:"}},
		{`{"name": "n", "mtu": 40}`, []string{"mtu: 40: must be 0 (detect) or between 68 and 65535"}},
		{`{"name": "n", "mtu": 1000, "ipam": {"assign_ipv6": true}}`, []string{"mtu: 1000: must be 0 (detect) or between 1280"}},
		{`{"name": "n", "policy_timeout": "-1s"}`, []string{"policy_timeout: -1s: must not be negative"}},
		{`{"name": "n", "log_level": "trace"}`, []string{`log_level: "trace": must be debug, info, warn or error`}},
		{`{"name": "n", "nodename": "a/b"}`, []string{"nodename:"}},
	} {
		c, err := ParseNetConf([]byte(tc.in))
		if err != nil {
			t.Errorf("ParseNetConf(%s): %v", tc.in, err)
			continue
		}
		c.Defaults()
		err = c.Validate()
		if err == nil {
			t.Errorf("Validate(%s) succeeded", tc.in)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%s) = %q, want it to contain %q", tc.in, err, w)
			}
		}
	}
}

func TestParseNetConfLenient(t *testing.T) {
	// The IPAM plugin reads a main plugin's configuration: its fields are
	// not errors, Tabby's are read.
	c, err := parseNetConf([]byte(`{"name": "n", "type": "bridge", "isGateway": true, "nodename": "node-9", "ipam": {"type": "tabby-ipam"}}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "node-9" || !c.IPAM.Tabby() {
		t.Errorf("lenient parse: %+v", c)
	}
	if _, err := ParseNetConf([]byte(`{"name": "n", "isGateway": true}`)); err == nil || !strings.Contains(err.Error(), "isGateway: unknown field") {
		t.Errorf("strict parse of isGateway: %v", err)
	}
}

func TestDatastoreSettings(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	if err := writeFile(path, 0o600, func(w io.Writer) error {
		_, err := io.WriteString(w, "contexts:\n- name: prod\n  datastore: {endpoints: [\"http://10.1.1.1:2379\"]}\n- name: lab\n  datastore: {endpoints: [\"http://10.2.2.2:2379\"]}\ncurrentContext: lab\n")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   DatastoreConf
		want []string
	}{
		{DatastoreConf{}, []string{"http://127.0.0.1:2379"}},
		{DatastoreConf{Endpoints: []string{"http://e:1"}}, []string{"http://e:1"}},
		{DatastoreConf{Context: "prod", ConfigFile: path}, []string{"http://10.1.1.1:2379"}},
		{DatastoreConf{ConfigFile: path}, []string{"http://10.2.2.2:2379"}},
		{DatastoreConf{Context: "prod", ConfigFile: path, Endpoints: []string{"http://e:1"}}, []string{"http://e:1"}},
	} {
		ds, err := datastoreSettings(tc.in)
		if err != nil {
			t.Errorf("datastoreSettings(%+v): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, ds.Endpoints); diff != "" {
			t.Errorf("datastoreSettings(%+v) endpoints (-want +got):\n%s", tc.in, diff)
		}
	}
	if _, err := datastoreSettings(DatastoreConf{Context: "nope", ConfigFile: path}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown context: %v", err)
	}
}

func TestResolveNode(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/nodename"
	if n, err := resolveNode(&NetConf{NodeName: "a", NodeNameFile: file}); err != nil || n != "a" {
		t.Errorf("nodename: %q, %v", n, err)
	}
	host, _ := os.Hostname()
	if n, err := resolveNode(&NetConf{NodeNameFile: file}); err != nil || n != strings.ToLower(host) {
		t.Errorf("missing nodename_file: %q, %v; want the host name %q", n, err, host)
	}
	if err := os.WriteFile(file, []byte("node-7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := resolveNode(&NetConf{NodeNameFile: file}); err != nil || n != "node-7" {
		t.Errorf("nodename_file: %q, %v", n, err)
	}
}
