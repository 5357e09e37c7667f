package cni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/cliconfig"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// SupportedVersions are the CNI specification versions both plugins
// accept and return results in.
var SupportedVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// commandSlack is how long a command may take besides waiting for the
// agent (policy_timeout): datastore requests, IPAM, netlink.
const commandSlack = time.Minute

// Main runs the tabby plugin for the command in CNI_COMMAND, reading the
// configuration on stdin and writing the result or a CNI error on stdout.
// It returns the exit status. The binary should import package startup,
// which tunes the runtime for plugin processes.
func Main(buildVersion string) int {
	p := &plugin{}
	return runSkel(skel.CNIFuncs{Add: p.cmdAdd, Del: p.cmdDel, Check: p.cmdCheck, GC: p.cmdGC, Status: p.cmdStatus},
		"Tabby CNI plugin "+buildVersion)
}

// MainIPAM runs the tabby-ipam plugin, like Main.
func MainIPAM(buildVersion string) int {
	p := &ipamPlugin{}
	return runSkel(skel.CNIFuncs{Add: p.cmdAdd, Del: p.cmdDel, Check: p.cmdCheck, GC: p.cmdGC, Status: p.cmdStatus},
		"Tabby IPAM plugin "+buildVersion)
}

func runSkel(funcs skel.CNIFuncs, about string) int {
	if e := skel.PluginMainFuncsWithError(funcs, SupportedVersions, about); e != nil {
		if err := e.Print(); err != nil {
			fmt.Fprintf(os.Stderr, "tabby: writing the error: %v (the error was: %v)\n", err, e)
		}
		return 1
	}
	return 0
}

// plugin is the tabby plugin's commands.
type plugin struct{}

// session is what one command works with: the configuration, the node,
// the log and the datastore.
type session struct {
	conf   *NetConf
	stdin  []byte
	node   string
	socket string // the agent's status socket
	log    *slog.Logger
	client *datastore.Client
	ctx    context.Context

	closers []func()
}

// openSession loads the configuration (strictly for the main plugin),
// resolves the node, opens the log and connects to the datastore. The
// error is a CNI error.
func openSession(stdin []byte, strict bool) (*session, error) {
	conf, err := loadNetConf(stdin, strict)
	if err != nil {
		return nil, configError(err)
	}
	s := &session{conf: conf, stdin: stdin}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	if s.node, err = resolveNode(conf); err != nil {
		return nil, configError(err)
	}
	s.socket = conf.AgentSocket
	if s.socket == "" {
		s.socket = agent.StatusSocketPath(s.node)
	}
	if err := s.openLog(); err != nil {
		return nil, configError(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conf.PolicyTimeout.Duration+commandSlack)
	s.ctx = ctx
	s.closers = append(s.closers, cancel)

	ds, err := datastoreSettings(conf.Datastore)
	if err != nil {
		return nil, configError(fmt.Errorf("datastore: %w", err))
	}
	cfg := etcd.ClientConfig{Endpoints: ds.Endpoints, CertFile: ds.CertFile, KeyFile: ds.KeyFile, CAFile: ds.CAFile}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, configError(fmt.Errorf("datastore: %w", err))
	}
	store, err := etcd.New(ctx, cfg, s.log)
	if err != nil {
		return nil, datastoreError(cfg.Endpoints, err)
	}
	s.closers = append(s.closers, func() { store.Close() })
	s.client = datastore.NewClient(store)
	ok = true
	return s, nil
}

func (s *session) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// openLog logs to log_file at log_level, or warnings and errors to stderr.
func (s *session) openLog() error {
	if s.conf.LogFile == "" {
		s.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", s.node)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.conf.LogLevel)); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.conf.LogFile), 0o755); err != nil {
		return fmt.Errorf("log_file: %w", err)
	}
	f, err := os.OpenFile(s.conf.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("log_file: %w", err)
	}
	s.closers = append(s.closers, func() { f.Close() })
	s.log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: level})).With("node", s.node, "pid", os.Getpid())
	return nil
}

// resolveNode returns the node name: nodename, else the contents of
// nodename_file if it exists, else the host name in lower case.
func resolveNode(c *NetConf) (string, error) {
	if c.NodeName != "" {
		return c.NodeName, nil
	}
	if c.NodeNameFile != "" {
		b, err := os.ReadFile(c.NodeNameFile)
		switch {
		case err == nil:
			if n := strings.TrimSpace(string(b)); n != "" {
				return n, nil
			}
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("nodename_file: %w", err)
		}
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("nodename: not set, and the host name is unknown: %w", err)
	}
	return strings.ToLower(h), nil
}

// datastoreSettings resolves the datastore section with internal/
// cliconfig: the named context (or the config file's current context)
// overridden by the explicit settings. The environment is not read: a CNI
// plugin's environment belongs to the runtime.
func datastoreSettings(d DatastoreConf) (cliconfig.Datastore, error) {
	f := &cliconfig.File{}
	if d.Context != "" || d.ConfigFile != "" {
		path := d.ConfigFile
		if path == "" {
			path = cliconfig.DefaultPath()
		}
		var err error
		if f, err = cliconfig.Load(path); err != nil {
			return cliconfig.Datastore{}, err
		}
	}
	return f.Resolve(cliconfig.Overrides{
		Context: d.Context, Endpoints: d.Endpoints, CertFile: d.CertFile, KeyFile: d.KeyFile, CAFile: d.CAFile,
	}, func(string) string { return "" })
}

// addresses returns the configured address source.
func (s *session) addresses(endpointAttrs bool) (addressSource, error) {
	if !s.conf.IPAM.Tabby() {
		return delegatedIPAM{typ: s.conf.IPAM.Type, stdin: s.stdin}, nil
	}
	return newTabbyIPAM(s.client.Store(), s.conf.IPAM, s.node, lockPath(s.socket), endpointAttrs, s.log)
}

var (
	wepKind, _    = v1.LookupKind("WorkloadEndpoint")
	configKind, _ = v1.LookupKind("Configuration")
)

// interfacePrefix returns the node's effective Configuration
// interfacePrefix: the host sides' names must start with it.
func (s *session) interfacePrefix(ctx context.Context) (string, error) {
	var confs [2]*v1.Configuration
	var errs [2]error
	var wg sync.WaitGroup
	for i, name := range []string{"default", "node." + s.node} {
		wg.Go(func() {
			obj, err := s.client.Get(ctx, configKind, "", name)
			switch {
			case errors.Is(err, datastore.ErrNotFound):
			case err != nil:
				errs[i] = fmt.Errorf("reading Configuration %s: %w", name, err)
			default:
				c, ok := obj.(*v1.Configuration)
				if !ok {
					errs[i] = fmt.Errorf("reading Configuration %s: unexpected %T", name, obj)
				}
				confs[i] = c
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return "", err
	}
	return v1.EffectiveConfiguration(confs[0], confs[1]).InterfacePrefix, nil
}

// endpoint reads the attachment's WorkloadEndpoint; nil if it does not
// exist.
func (s *session) endpoint(ctx context.Context, a attachment) (*v1.WorkloadEndpoint, error) {
	obj, err := s.client.Get(ctx, wepKind, a.namespace, a.name)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading WorkloadEndpoint %s/%s: %w", a.namespace, a.name, err)
	}
	w, ok := obj.(*v1.WorkloadEndpoint)
	if !ok {
		return nil, fmt.Errorf("reading WorkloadEndpoint %s/%s: unexpected %T", a.namespace, a.name, obj)
	}
	return w, nil
}

// deleteEndpoint deletes the attachment's WorkloadEndpoint if it belongs
// to the attachment's container (a newer sandbox of the same pod may have
// taken the name over). It reports whether the name was the attachment's
// (deleted now, or missing).
func (s *session) deleteEndpoint(ctx context.Context, a attachment) (ours bool, err error) {
	for range 5 {
		w, err := s.endpoint(ctx, a)
		if err != nil || w == nil {
			return w == nil && err == nil, err
		}
		if w.Spec.ContainerID != a.containerID {
			return false, nil
		}
		_, err = s.client.Delete(ctx, wepKind, a.namespace, a.name, w.Metadata.ResourceVersion)
		switch {
		case err == nil, errors.Is(err, datastore.ErrNotFound):
			return true, nil
		case !errors.Is(err, datastore.ErrConflict):
			return true, fmt.Errorf("deleting WorkloadEndpoint %s/%s: %w", a.namespace, a.name, err)
		}
	}
	return false, fmt.Errorf("deleting WorkloadEndpoint %s/%s: it keeps changing", a.namespace, a.name)
}

// probeDatastore checks that the datastore answers.
func (s *session) probeDatastore(ctx context.Context) error {
	_, err := s.client.Store().Get(ctx, datastore.Key{Kind: "Configuration", Name: "default"})
	if err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return err
	}
	return nil
}

// printResult writes r in the configuration's version.
func (s *session) printResult(r types.Result) error {
	return types.PrintResult(r, s.conf.CNIVersion)
}
