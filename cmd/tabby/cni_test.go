package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/cni"
)

func TestCNIPluginDispatch(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"tabby", "version"}, nil, false},
		{[]string{"/opt/cni/bin/tabby"}, map[string]string{"CNI_COMMAND": "ADD"}, true},
		{[]string{"/opt/cni/bin/tabby-ipam"}, nil, true},
		{[]string{"tabby-ipam"}, map[string]string{"CNI_COMMAND": "DEL"}, true},
		{nil, nil, false},
	} {
		if _, ok := cniPlugin(tc.args, env(tc.env)); ok != tc.want {
			t.Errorf("cniPlugin(%q, %v) = %v, want %v", tc.args, tc.env, ok, tc.want)
		}
	}
}

func TestInstallCNI(t *testing.T) {
	t.Setenv("TABBY_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("TABBY_ETCD_ENDPOINTS", "")
	t.Setenv("TABBY_CONTEXT", "")
	binDir, confDir := filepath.Join(t.TempDir(), "bin"), filepath.Join(t.TempDir(), "net.d")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // installing again is harmless
		var out, errb bytes.Buffer
		code := run([]string{"tabby", "install-cni", "--bin-dir", binDir, "--conf-dir", confDir,
			"--endpoints", "http://10.0.0.1:2379", "--nodename", "node-1"}, strings.NewReader(""), &out, &errb)
		if code != 0 {
			t.Fatalf("install-cni #%d: exit %d: %s", i+1, code, errb.String())
		}
		if !strings.Contains(out.String(), filepath.Join(binDir, "tabby-ipam")) {
			t.Errorf("install-cni output: %s", out.String())
		}
	}
	for _, name := range []string{"tabby", "tabby-ipam"} {
		p := filepath.Join(binDir, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not a copy of the binary (%v)", p, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, %v", p, fi.Mode(), err)
		}
	}
	entries, _ := os.ReadDir(binDir)
	if len(entries) != 2 {
		t.Errorf("bin dir has %d files (temporary files left?)", len(entries))
	}
	list, err := libcni.ConfListFromFile(filepath.Join(confDir, cni.DefaultConfName))
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "tabby" || list.CNIVersion != "1.1.0" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "tabby" {
		t.Fatalf("conflist: %s", list.Bytes)
	}
	conf, err := cni.ParseNetConf(list.Plugins[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"http://10.0.0.1:2379"}, conf.Datastore.Endpoints); diff != "" || conf.NodeName != "node-1" || conf.IPAM.Type != "tabby-ipam" {
		t.Errorf("plugin configuration %s (-want +got endpoints):\n%s", list.Plugins[0].Bytes, diff)
	}

	// With --context the conflist names the context and the config file.
	var errb bytes.Buffer
	code := run([]string{"tabby", "install-cni", "--bin-dir", binDir, "--conf-dir", confDir, "--context", "prod", "--conf-name", "20-prod.conflist"},
		strings.NewReader(""), &bytes.Buffer{}, &errb)
	if code != 0 {
		t.Fatalf("install-cni --context: %s", errb.String())
	}
	list, err = libcni.ConfListFromFile(filepath.Join(confDir, "20-prod.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if conf, err := cni.ParseNetConf(list.Plugins[0].Bytes); err != nil || conf.Datastore.Context != "prod" || conf.Datastore.ConfigFile != os.Getenv("TABBY_CONFIG") {
		t.Errorf("conflist with context: %s (%v)", list.Plugins[0].Bytes, err)
	}

	code = run([]string{"tabby", "install-cni", "--bin-dir", "relative/bin", "--cni-version", "0.2.0"}, strings.NewReader(""), &bytes.Buffer{}, &errb)
	if code == 0 || !strings.Contains(errb.String(), "bin-dir") || !strings.Contains(errb.String(), "cni-version") {
		t.Errorf("bad flags: exit %d, %s", code, errb.String())
	}
}
