package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/cliconfig"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// globalFlags are the connection and logging flags every command has.
type globalFlags struct {
	configPath     string
	context        string
	endpoints      []string
	certFile       string
	keyFile        string
	caFile         string
	requestTimeout time.Duration
	verbose        bool
}

// app is what the subcommands share.
type app struct {
	streams *streams
	flags   globalFlags
}

func newRootCommand(s *streams) *cobra.Command {
	a := &app{streams: s}
	root := &cobra.Command{
		Use:   "tabby",
		Short: "Tabby: a pure layer-3 network for containers and VMs",
		Long: `Tabby gives every workload its own /32 and /128, routes them with BGP
(no overlay), and enforces policy with nftables at both ends of every flow.

Connection settings come from flags, then TABBY_ETCD_ENDPOINTS, TABBY_ETCD_CERT,
TABBY_ETCD_KEY, TABBY_ETCD_CACERT and TABBY_CONTEXT, then the current context of
the config file (` + "`tabby config`" + `), then ` + cliconfig.DefaultEndpoint + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.configPath, "config", "", "config file (default $TABBY_CONFIG or ~/.config/tabby/config.yaml)")
	pf.StringVar(&a.flags.context, "context", "", "context of the config file to use")
	pf.StringSliceVar(&a.flags.endpoints, "endpoints", nil, "etcd client URLs, comma-separated")
	pf.StringVar(&a.flags.certFile, "cert", "", "etcd client certificate file")
	pf.StringVar(&a.flags.keyFile, "key", "", "etcd client key file")
	pf.StringVar(&a.flags.caFile, "cacert", "", "CA bundle to verify the etcd server")
	pf.DurationVar(&a.flags.requestTimeout, "request-timeout", 10*time.Second, "give up on the datastore after this long")
	pf.BoolVarP(&a.flags.verbose, "verbose", "v", false, "log debug messages to stderr")

	root.AddCommand(
		newApplyCommand(a),
		newCreateCommand(a),
		newGetCommand(a),
		newDeleteCommand(a),
		newDatastoreCommand(a),
		newIPAMCommand(a),
		newAgentCommand(a),
		newNodeCommand(a),
		newPolicyCommand(a),
		newInstallCNICommand(a),
		newLabCommand(a),
		newBenchCommand(a),
		newConfigCommand(a),
		newVersionCommand(a),
	)
	return root
}

// logger logs warnings and errors (or everything with -v) to stderr.
func (a *app) logger() *slog.Logger { return a.loggerAt(slog.LevelWarn) }

// loggerAt logs from level up (or everything with -v) to stderr; daemons
// use slog.LevelInfo.
func (a *app) loggerAt(level slog.Level) *slog.Logger {
	if a.flags.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.streams.err, &slog.HandlerOptions{Level: level}))
}

func (a *app) configPath() string {
	if a.flags.configPath != "" {
		return a.flags.configPath
	}
	return cliconfig.DefaultPath()
}

// datastoreSettings resolves the connection settings.
func (a *app) datastoreSettings() (cliconfig.Datastore, error) {
	f, err := cliconfig.Load(a.configPath())
	if err != nil {
		return cliconfig.Datastore{}, err
	}
	return f.Resolve(cliconfig.Overrides{
		Context:   a.flags.context,
		Endpoints: a.flags.endpoints,
		CertFile:  a.flags.certFile,
		KeyFile:   a.flags.keyFile,
		CAFile:    a.flags.caFile,
	}, os.Getenv)
}

// connect opens the datastore; the caller closes the returned client's
// store. The context bounds every request of the command.
func (a *app) connect(ctx context.Context) (*datastore.Client, error) {
	ds, err := a.datastoreSettings()
	if err != nil {
		return nil, err
	}
	cfg := etcd.ClientConfig{
		Endpoints: ds.Endpoints,
		CertFile:  ds.CertFile,
		KeyFile:   ds.KeyFile,
		CAFile:    ds.CAFile,
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("datastore settings: %w", err)
	}
	store, err := etcd.New(ctx, cfg, a.logger())
	if err != nil {
		return nil, fmt.Errorf("connecting to the datastore at %v: %w", ds.Endpoints, err)
	}
	return datastore.NewClient(store), nil
}

// dial connects to the datastore for one command: the returned context is
// bounded by --request-timeout, and done closes the connection and releases
// the context.
func (a *app) dial(ctx context.Context) (context.Context, *datastore.Client, func(), error) {
	ctx, cancel := a.withTimeout(ctx)
	c, err := a.connect(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, c, func() { c.Store().Close(); cancel() }, nil
}

// withTimeout bounds a command's datastore work by --request-timeout.
func (a *app) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.flags.requestTimeout)
}
