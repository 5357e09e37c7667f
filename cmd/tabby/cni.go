package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/cni"
	// Its initializer tunes the runtime of plugin processes before the
	// other packages' initializers run.
	"github.com/tabbynet/tabby/internal/cni/startup"
)

// cniPlugin returns the CNI plugin to run instead of the CLI: the IPAM
// plugin when the binary is invoked as tabby-ipam, the main plugin when
// CNI_COMMAND is set. The plugins read stdin and write stdout themselves.
func cniPlugin(args []string, getenv func(string) string) (func(buildVersion string) int, bool) {
	switch {
	case !startup.Plugin(args, getenv):
		return nil, false
	case filepath.Base(args[0]) == cni.IPAMPluginType:
		return cni.MainIPAM, true
	}
	return cni.Main, true
}

func newInstallCNICommand(a *app) *cobra.Command {
	var cfg cni.InstallConfig
	cmd := &cobra.Command{
		Use:   "install-cni",
		Short: "Install the tabby and tabby-ipam CNI plugins and a network configuration",
		Long: `Copy this binary into the CNI binary directory as tabby (the CNI plugin) and
tabby-ipam (the IPAM plugin), and write a network configuration list that uses
them. The datastore settings come from --context (written as a context name, read
by the plugin from the config file) or else from the usual connection flags,
environment and config file, resolved now and written out. Files are replaced
atomically; running it again is harmless. See docs/cni.md.`,
		Example: `  tabby install-cni
  tabby install-cni --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d --endpoints http://10.0.0.1:2379
  tabby install-cni --context prod --nodename node-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.flags.context != "" {
				path, err := filepath.Abs(a.configPath())
				if err != nil {
					return err
				}
				cfg.Datastore = cni.DatastoreConf{Context: a.flags.context, ConfigFile: path}
			} else {
				ds, err := a.datastoreSettings()
				if err != nil {
					return err
				}
				cfg.Datastore = cni.DatastoreConf{Endpoints: ds.Endpoints, CertFile: ds.CertFile, KeyFile: ds.KeyFile, CAFile: ds.CAFile}
			}
			written, err := cni.Install(cfg)
			for _, p := range written {
				fmt.Fprintf(a.streams.out, "installed %s\n", p)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.BinDir, "bin-dir", cni.DefaultBinDir, "CNI binary directory")
	fl.StringVar(&cfg.ConfDir, "conf-dir", cni.DefaultConfDir, "CNI network configuration directory")
	fl.StringVar(&cfg.ConfName, "conf-name", cni.DefaultConfName, "file name of the network configuration list")
	fl.StringVar(&cfg.Network, "network", cni.DefaultNetwork, "network name")
	fl.StringVar(&cfg.CNIVersion, "cni-version", "1.1.0", "cniVersion of the network configuration list")
	fl.StringVar(&cfg.NodeName, "nodename", "", "node name for the plugin (default: the host name at run time)")
	fl.IntVar(&cfg.MTU, "mtu", 0, "MTU of workload interfaces (default: detected at run time)")
	return cmd
}
