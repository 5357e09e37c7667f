package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

func newDatastoreCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "datastore",
		Short: "Run Tabby's embedded datastore",
	}
	cmd.AddCommand(newDatastoreRunCommand(a))
	return cmd
}

func newDatastoreRunCommand(a *app) *cobra.Command {
	var cfg etcd.ServerConfig
	cmd := &cobra.Command{
		Use:   "run --data-dir DIR [--listen-client-urls URL]",
		Short: "Run a single-member embedded etcd as Tabby's datastore",
		Long: `Run a single-member etcd, embedded in this process, until interrupted.

It is a real etcd: when one machine is no longer enough, point every Tabby
component at a 3- or 5-member etcd cluster instead (--endpoints, or a context),
with no other change. With --cert-file and --key-file the client URLs serve TLS;
add --trusted-ca-file and --client-cert-auth to require client certificates.`,
		Example: `  tabby datastore run --data-dir /var/lib/tabby/etcd
  tabby datastore run --data-dir /tmp/etcd --listen-client-urls http://127.0.0.1:12379
  tabby datastore run --data-dir /var/lib/tabby/etcd --listen-client-urls https://10.0.0.1:2379 \
      --cert-file server.pem --key-file server-key.pem --trusted-ca-file ca.pem --client-cert-auth`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Defaults()
			if err := cfg.Validate(); err != nil {
				return err
			}
			log := a.loggerAt(slog.LevelInfo)
			srv, err := etcd.StartServer(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			fmt.Fprintf(a.streams.out, "tabby datastore: etcd ready, clients: %s, data: %s\n", strings.Join(srv.ClientURLs(), ","), cfg.DataDir)
			select {
			case <-cmd.Context().Done():
				fmt.Fprintln(a.streams.out, "tabby datastore: stopping")
				return nil
			case err := <-srv.Err():
				return fmt.Errorf("etcd stopped: %w", err)
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", "", "directory for etcd's data (required)")
	fl.StringSliceVar(&cfg.ListenClientURLs, "listen-client-urls", nil, "client URLs to listen on (default http://127.0.0.1:2379)")
	fl.StringSliceVar(&cfg.ListenPeerURLs, "listen-peer-urls", nil, "peer URL to listen on (default http://127.0.0.1:2380)")
	fl.StringVar(&cfg.Name, "name", "", "member name (default tabby)")
	fl.StringVar(&cfg.CertFile, "cert-file", "", "TLS certificate for the client URLs")
	fl.StringVar(&cfg.KeyFile, "key-file", "", "TLS key for the client URLs")
	fl.StringVar(&cfg.TrustedCAFile, "trusted-ca-file", "", "CA that signs client certificates")
	fl.BoolVar(&cfg.ClientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file")
	return cmd
}
