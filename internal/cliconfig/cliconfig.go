// Package cliconfig reads and writes the tabby CLI's connection settings:
// a kubeconfig-like file of named contexts, each naming a datastore, plus
// the environment variables and flags that override it.
package cliconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Environment variables that override the config file.
const (
	EnvConfig    = "TABBY_CONFIG"         // path of the config file
	EnvContext   = "TABBY_CONTEXT"        // context to use instead of currentContext
	EnvEndpoints = "TABBY_ETCD_ENDPOINTS" // comma-separated etcd client URLs
	EnvCert      = "TABBY_ETCD_CERT"      // client certificate file
	EnvKey       = "TABBY_ETCD_KEY"       // client key file
	EnvCA        = "TABBY_ETCD_CACERT"    // CA bundle that signed the etcd server certificate
)

// DefaultEndpoint is used when nothing else names a datastore: the
// embedded datastore started by `tabby datastore run` with its defaults.
const DefaultEndpoint = "http://127.0.0.1:2379"

// Datastore says how to reach etcd.
type Datastore struct {
	Endpoints []string `json:"endpoints,omitempty"`
	CertFile  string   `json:"certFile,omitempty"`
	KeyFile   string   `json:"keyFile,omitempty"`
	CAFile    string   `json:"caFile,omitempty"`
}

// Context is a named datastore.
type Context struct {
	Name      string    `json:"name"`
	Datastore Datastore `json:"datastore"`
}

// File is the config file, by default ~/.config/tabby/config.yaml.
type File struct {
	APIVersion     string    `json:"apiVersion,omitempty"`
	Kind           string    `json:"kind,omitempty"`
	CurrentContext string    `json:"currentContext,omitempty"`
	Contexts       []Context `json:"contexts,omitempty"`
}

// DefaultPath returns $TABBY_CONFIG, or config.yaml in the user's config
// directory ($XDG_CONFIG_HOME/tabby or ~/.config/tabby).
func DefaultPath() string {
	if p := os.Getenv(EnvConfig); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = filepath.Join(os.Getenv("HOME"), ".config")
	}
	return filepath.Join(dir, "tabby", "config.yaml")
}

// Load reads the config file at path. A missing file is an empty config.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

// Validate checks names are unique and set and the current context exists.
func (f *File) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, c := range f.Contexts {
		switch {
		case c.Name == "":
			errs = append(errs, fmt.Errorf("contexts[%d].name: must be set", i))
		case seen[c.Name]:
			errs = append(errs, fmt.Errorf("contexts[%d].name: %q: duplicate context", i, c.Name))
		}
		seen[c.Name] = true
		if (c.Datastore.CertFile == "") != (c.Datastore.KeyFile == "") {
			errs = append(errs, fmt.Errorf("contexts[%d].datastore: certFile and keyFile must be set together", i))
		}
	}
	if f.CurrentContext != "" && !seen[f.CurrentContext] {
		errs = append(errs, fmt.Errorf("currentContext: %q: no such context", f.CurrentContext))
	}
	return errors.Join(errs...)
}

// Save writes the file atomically with mode 0600, creating its directory.
func (f *File) Save(path string) error {
	f.APIVersion, f.Kind = "tabby.dev/v1", "Config"
	if err := f.Validate(); err != nil {
		return err
	}
	data, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// Context returns the named context.
func (f *File) Context(name string) (Context, bool) {
	i := slices.IndexFunc(f.Contexts, func(c Context) bool { return c.Name == name })
	if i < 0 {
		return Context{}, false
	}
	return f.Contexts[i], true
}

// SetContext adds or replaces a context, keeping contexts sorted by name.
func (f *File) SetContext(c Context) {
	f.DeleteContext(c.Name)
	f.Contexts = append(f.Contexts, c)
	slices.SortFunc(f.Contexts, func(a, b Context) int { return strings.Compare(a.Name, b.Name) })
}

// DeleteContext removes a context, and clears currentContext if it named
// it. It reports whether the context existed.
func (f *File) DeleteContext(name string) bool {
	n := len(f.Contexts)
	f.Contexts = slices.DeleteFunc(f.Contexts, func(c Context) bool { return c.Name == name })
	if f.CurrentContext == name && len(f.Contexts) != n {
		f.CurrentContext = ""
	}
	return len(f.Contexts) != n
}

// Overrides are settings from flags; empty fields do not override.
type Overrides struct {
	Context   string
	Endpoints []string
	CertFile  string
	KeyFile   string
	CAFile    string
}

// Resolve picks the datastore settings: flags win over environment
// variables, which win over the selected context (flag, then
// $TABBY_CONTEXT, then currentContext), which wins over DefaultEndpoint.
// getenv is os.Getenv outside tests.
func (f *File) Resolve(o Overrides, getenv func(string) string) (Datastore, error) {
	var ds Datastore
	name := firstNonEmpty(o.Context, getenv(EnvContext), f.CurrentContext)
	if name != "" {
		c, ok := f.Context(name)
		if !ok {
			return Datastore{}, fmt.Errorf("context %q: no such context (see tabby config get-contexts)", name)
		}
		ds = c.Datastore
	}
	if e := getenv(EnvEndpoints); e != "" {
		ds.Endpoints = splitList(e)
	}
	if len(o.Endpoints) > 0 {
		ds.Endpoints = o.Endpoints
	}
	ds.CertFile = firstNonEmpty(o.CertFile, getenv(EnvCert), ds.CertFile)
	ds.KeyFile = firstNonEmpty(o.KeyFile, getenv(EnvKey), ds.KeyFile)
	ds.CAFile = firstNonEmpty(o.CAFile, getenv(EnvCA), ds.CAFile)
	if len(ds.Endpoints) == 0 {
		ds.Endpoints = []string{DefaultEndpoint}
	}
	return ds, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
