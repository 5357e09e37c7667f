package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Install defaults.
const (
	DefaultBinDir   = "/opt/cni/bin"
	DefaultConfDir  = "/etc/cni/net.d"
	DefaultConfName = "10-tabby.conflist"
	DefaultNetwork  = "tabby"
)

// InstallConfig says where `tabby install-cni` puts the plugins and what
// network configuration it writes.
type InstallConfig struct {
	// BinDir receives the binary as tabby and tabby-ipam. Default
	// /opt/cni/bin.
	BinDir string
	// ConfDir receives the conflist. Default /etc/cni/net.d.
	ConfDir string
	// ConfName is the conflist's file name. Default 10-tabby.conflist.
	ConfName string
	// Source is the binary to copy. Default: the running executable.
	Source string
	// Network is the network's name. Default "tabby".
	Network string
	// CNIVersion is the conflist's cniVersion. Default 1.1.0.
	CNIVersion string
	// Datastore, NodeName and MTU go into the tabby plugin's
	// configuration as they are (empty ones are left out).
	Datastore DatastoreConf
	NodeName  string
	MTU       int
}

// Defaults fills the unset fields.
func (c *InstallConfig) Defaults() error {
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir
	}
	if c.ConfDir == "" {
		c.ConfDir = DefaultConfDir
	}
	if c.ConfName == "" {
		c.ConfName = DefaultConfName
	}
	if c.Network == "" {
		c.Network = DefaultNetwork
	}
	if c.CNIVersion == "" {
		c.CNIVersion = "1.1.0"
	}
	if c.Source == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("source: finding the running binary: %w", err)
		}
		c.Source = exe
	}
	return nil
}

// Validate reports every invalid field, each error naming its field.
func (c *InstallConfig) Validate() error {
	var errs []error
	for _, d := range []struct{ name, path string }{{"bin-dir", c.BinDir}, {"conf-dir", c.ConfDir}, {"source", c.Source}} {
		if !filepath.IsAbs(d.path) {
			errs = append(errs, fmt.Errorf("%s: %q: must be an absolute path", d.name, d.path))
		}
	}
	if strings.ContainsRune(c.ConfName, '/') || !strings.HasSuffix(c.ConfName, ".conflist") {
		errs = append(errs, fmt.Errorf("conf-name: %q: must be a file name ending in .conflist", c.ConfName))
	}
	if vs := SupportedVersions.SupportedVersions(); !slices.Contains(vs, c.CNIVersion) {
		errs = append(errs, fmt.Errorf("cni-version: %q: must be one of %s", c.CNIVersion, strings.Join(vs, ", ")))
	}
	if _, err := c.Conflist(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Conflist returns the network configuration list Install writes: one
// tabby plugin with Tabby's IPAM. It is checked with ParseNetConf.
func (c *InstallConfig) Conflist() ([]byte, error) {
	plugin := map[string]any{"type": PluginType, "ipam": map[string]any{"type": IPAMPluginType}}
	if ds := c.Datastore; len(ds.Endpoints) > 0 || ds.CertFile != "" || ds.KeyFile != "" || ds.CAFile != "" || ds.Context != "" || ds.ConfigFile != "" {
		plugin["datastore"] = ds
	}
	if c.NodeName != "" {
		plugin["nodename"] = c.NodeName
	}
	if c.MTU != 0 {
		plugin["mtu"] = c.MTU
	}
	pj, err := json.Marshal(plugin)
	if err != nil {
		return nil, err
	}
	nc, err := ParseNetConf(pj)
	if err == nil {
		nc.Name = c.Network
		nc.Defaults()
		err = nc.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("the tabby plugin's configuration: %w", err)
	}
	list := map[string]any{"cniVersion": c.CNIVersion, "name": c.Network, "plugins": []any{json.RawMessage(pj)}}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Install copies the binary into BinDir as tabby and tabby-ipam and writes
// the conflist into ConfDir. Every file is written under a temporary name
// and renamed into place, so a runtime never sees half a file and a
// plugin that is running keeps its old binary. Running it again with the
// same config writes the same files. It returns the paths written.
func Install(c InstallConfig) ([]string, error) {
	if err := c.Defaults(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	conf, err := c.Conflist()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{c.BinDir, c.ConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var written []string
	for _, name := range []string{PluginType, IPAMPluginType} {
		dst := filepath.Join(c.BinDir, name)
		if err := copyFile(c.Source, dst); err != nil {
			return written, err
		}
		written = append(written, dst)
	}
	dst := filepath.Join(c.ConfDir, c.ConfName)
	if err := writeFile(dst, 0o644, func(w io.Writer) error { _, err := w.Write(conf); return err }); err != nil {
		return written, err
	}
	return append(written, dst), nil
}

// copyFile copies the executable src to dst, unless they are the same
// file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	defer in.Close()
	if si, err := in.Stat(); err == nil {
		if di, err := os.Stat(dst); err == nil && os.SameFile(si, di) {
			return nil
		}
	}
	return writeFile(dst, 0o755, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
}

// writeFile writes a file atomically: a temporary file in the same
// directory, synced, then renamed over path.
func writeFile(path string, mode os.FileMode, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("installing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = fill(tmp)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("installing %s: %w", path, err)
	}
	return nil
}
