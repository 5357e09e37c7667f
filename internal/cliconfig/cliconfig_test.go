package cliconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestResolvePrecedence(t *testing.T) {
	f := &File{
		CurrentContext: "lab",
		Contexts: []Context{
			{Name: "lab", Datastore: Datastore{Endpoints: []string{"http://10.0.0.1:2379"}, CAFile: "/lab/ca.pem"}},
			{Name: "prod", Datastore: Datastore{Endpoints: []string{"https://e1:2379", "https://e2:2379"}, CertFile: "c", KeyFile: "k"}},
		},
	}
	tests := []struct {
		name string
		o    Overrides
		env  map[string]string
		want Datastore
	}{
		{"current context", Overrides{}, nil, Datastore{Endpoints: []string{"http://10.0.0.1:2379"}, CAFile: "/lab/ca.pem"}},
		{"env context", Overrides{}, map[string]string{EnvContext: "prod"}, f.Contexts[1].Datastore},
		{"flag context beats env", Overrides{Context: "lab"}, map[string]string{EnvContext: "prod"}, f.Contexts[0].Datastore},
		{"env endpoints beat context", Overrides{}, map[string]string{EnvEndpoints: "http://a:1, http://b:2"},
			Datastore{Endpoints: []string{"http://a:1", "http://b:2"}, CAFile: "/lab/ca.pem"}},
		{"flags beat env", Overrides{Endpoints: []string{"http://f:1"}, CAFile: "/f/ca"}, map[string]string{EnvEndpoints: "http://a:1", EnvCA: "/e/ca"},
			Datastore{Endpoints: []string{"http://f:1"}, CAFile: "/f/ca"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.Resolve(tc.o, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Resolve (-want +got):\n%s", d)
			}
		})
	}
}

func TestResolveDefaultAndUnknownContext(t *testing.T) {
	got, err := (&File{}).Resolve(Overrides{}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Datastore{Endpoints: []string{DefaultEndpoint}}, got); d != "" {
		t.Errorf("default (-want +got):\n%s", d)
	}
	_, err = (&File{}).Resolve(Overrides{Context: "nope"}, env(nil))
	if err == nil || !strings.Contains(err.Error(), `context "nope": no such context`) {
		t.Errorf("unknown context: got %v", err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config.yaml")
	f, err := Load(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	f.SetContext(Context{Name: "b", Datastore: Datastore{Endpoints: []string{"http://b"}}})
	f.SetContext(Context{Name: "a", Datastore: Datastore{Endpoints: []string{"http://a"}}})
	f.CurrentContext = "b"
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f, g); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if g.Contexts[0].Name != "a" {
		t.Errorf("contexts not sorted: %v", g.Contexts)
	}
	if !g.DeleteContext("b") || g.CurrentContext != "" {
		t.Errorf("DeleteContext(current) left currentContext %q", g.CurrentContext)
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	tests := map[string]string{
		"unknown field":   "contextz: []\n",
		"duplicate":       "contexts:\n- name: a\n- name: a\n",
		"missing current": "currentContext: x\n",
		"cert no key":     "contexts:\n- name: a\n  datastore: {certFile: c}\n",
	}
	wants := map[string]string{
		"unknown field":   "contextz",
		"duplicate":       `contexts[1].name: "a": duplicate context`,
		"missing current": `currentContext: "x": no such context`,
		"cert no key":     "certFile and keyFile must be set together",
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), wants[name]) {
				t.Errorf("Load: got %v, want error containing %q", err, wants[name])
			}
		})
	}
}
