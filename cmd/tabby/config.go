package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/cliconfig"
)

func newConfigCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage the contexts of the config file, as kubectl config does",
		Example: `  tabby config get-contexts
  tabby config set-context prod --endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 --cert c.pem --key k.pem --cacert ca.pem
  tabby config use-context prod
  tabby config current-context`,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "use-context NAME",
			Short:   "Make NAME the current context",
			Example: "  tabby config use-context lab",
			Args:    cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, args []string) error {
				return a.editConfig(fmt.Sprintf("Switched to context %q.", args[0]), func(f *cliconfig.File) error {
					if _, ok := f.Context(args[0]); !ok {
						return fmt.Errorf("context %q: no such context", args[0])
					}
					f.CurrentContext = args[0]
					return nil
				})
			},
		},
		&cobra.Command{
			Use:     "current-context",
			Short:   "Print the current context",
			Example: "  tabby config current-context",
			Args:    cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				f, err := cliconfig.Load(a.configPath())
				if err != nil {
					return err
				}
				if f.CurrentContext == "" {
					return fmt.Errorf("no current context is set in %s", a.configPath())
				}
				fmt.Fprintln(a.streams.out, f.CurrentContext)
				return nil
			},
		},
		&cobra.Command{
			Use:     "get-contexts",
			Short:   "List the contexts",
			Example: "  tabby config get-contexts",
			Args:    cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				f, err := cliconfig.Load(a.configPath())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.streams.out, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "CURRENT\tNAME\tENDPOINTS\tTLS")
				for _, c := range f.Contexts {
					cur := ""
					if c.Name == f.CurrentContext {
						cur = "*"
					}
					tls := "no"
					if c.Datastore.CAFile != "" || c.Datastore.CertFile != "" {
						tls = "yes"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, c.Name, strings.Join(c.Datastore.Endpoints, ","), tls)
				}
				return tw.Flush()
			},
		},
		newSetContextCommand(a),
		&cobra.Command{
			Use:     "delete-context NAME",
			Short:   "Delete a context",
			Example: "  tabby config delete-context old-lab",
			Args:    cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, args []string) error {
				return a.editConfig(fmt.Sprintf("Deleted context %q.", args[0]), func(f *cliconfig.File) error {
					if !f.DeleteContext(args[0]) {
						return fmt.Errorf("context %q: no such context", args[0])
					}
					return nil
				})
			},
		},
	)
	return cmd
}

func newSetContextCommand(a *app) *cobra.Command {
	var ds cliconfig.Datastore
	var use bool
	cmd := &cobra.Command{
		Use:   "set-context NAME --endpoints URL[,URL…] [--cert FILE --key FILE] [--cacert FILE]",
		Short: "Add or replace a context",
		Example: `  tabby config set-context lab --endpoints http://127.0.0.1:2379 --use
  tabby config set-context prod --endpoints https://e1:2379,https://e2:2379,https://e3:2379 \
      --cert /etc/tabby/client.pem --key /etc/tabby/client-key.pem --cacert /etc/tabby/ca.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(ds.Endpoints) == 0 {
				return fmt.Errorf("--endpoints: must name at least one etcd client URL")
			}
			for _, p := range []struct{ flag, path string }{{"--cert", ds.CertFile}, {"--key", ds.KeyFile}, {"--cacert", ds.CAFile}} {
				if p.path == "" {
					continue
				}
				if _, err := os.Stat(p.path); err != nil {
					return fmt.Errorf("%s: %w", p.flag, err)
				}
			}
			return a.editConfig(fmt.Sprintf("Context %q set.", args[0]), func(f *cliconfig.File) error {
				f.SetContext(cliconfig.Context{Name: args[0], Datastore: ds})
				if use {
					f.CurrentContext = args[0]
				}
				return nil
			})
		},
	}
	// These shadow the global connection flags on purpose: here they are
	// what the context stores, not how to connect now.
	fl := cmd.Flags()
	fl.StringSliceVar(&ds.Endpoints, "endpoints", nil, "etcd client URLs, comma-separated")
	fl.StringVar(&ds.CertFile, "cert", "", "client certificate file")
	fl.StringVar(&ds.KeyFile, "key", "", "client key file")
	fl.StringVar(&ds.CAFile, "cacert", "", "CA bundle of the etcd server")
	fl.BoolVar(&use, "use", false, "also make it the current context")
	return cmd
}

// editConfig loads the config file, applies edit and saves it.
// editConfig loads the config file, lets edit change it, saves it, and
// only then prints done (so nothing claims a change that was not saved).
func (a *app) editConfig(done string, edit func(*cliconfig.File) error) error {
	path := a.configPath()
	f, err := cliconfig.Load(path)
	if err != nil {
		return err
	}
	if err := edit(f); err != nil {
		return err
	}
	if err := f.Save(path); err != nil {
		return err
	}
	fmt.Fprintln(a.streams.out, done)
	return nil
}
