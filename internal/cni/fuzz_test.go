package cni

import (
	"encoding/json"
	"testing"
)

// FuzzParseNetConf checks that any input either fails with an error or
// parses into a configuration that, after Defaults, validates or not
// without panicking, and that re-encoding a parsed configuration parses
// again to the same Tabby fields. Seeds beyond the f.Add calls are in
// testdata/fuzz/FuzzParseNetConf, with any crashers found.
func FuzzParseNetConf(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion": "1.1.0", "name": "n", "type": "tabby"}`,
		`{"name": "n", "ipam": {"type": "tabby-ipam", "assign_ipv4": "true", "assign_ipv6": false, "ipv4_pools": ["a"]}}`,
		`{"name": "n", "ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}}`,
		`{"name": "n", "datastore": {"endpoints": ["http://127.0.0.1:2379"], "context": "c"}, "mtu": 1400, "policy_timeout": "2s"}`,
		`{"name": "n", "args": {"cni": {"labels": [{"key": "a", "value": "b"}]}}}`,
		`{"name": "n", "prevResult": {"cniVersion": "1.0.0", "ips": []}, "cni.dev/valid-attachments": []}`,
		`{"name": "n", "unknown": 1}`,
		`{"ipam": null, "args": null, "datastore": null}`,
		`{`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseNetConf(in)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseNetConf(%q): empty error", in)
			}
			return
		}
		c.Defaults()
		_ = c.Validate()
		// Tabby's own fields survive a round trip through JSON.
		type own struct {
			Datastore     DatastoreConf
			NodeName      string
			NodeNameFile  string
			MTU           int
			PolicyTimeout Duration
			LogFile       string
			LogLevel      string
			AgentSocket   string
			IPAM          IPAMConf
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal %+v: %v", c, err)
		}
		c2, err := ParseNetConf(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		c2.Defaults()
		a := own{c.Datastore, c.NodeName, c.NodeNameFile, c.MTU, c.PolicyTimeout, c.LogFile, c.LogLevel, c.AgentSocket, c.IPAM}
		b := own{c2.Datastore, c2.NodeName, c2.NodeNameFile, c2.MTU, c2.PolicyTimeout, c2.LogFile, c2.LogLevel, c2.AgentSocket, c2.IPAM}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("round trip changed Tabby's fields:\n%s\n%s", ja, jb)
		}
	})
}
