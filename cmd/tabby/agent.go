package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

func newAgentCommand(a *app) *cobra.Command {
	var cfg agent.Config
	cmd := &cobra.Command{
		Use:   "agent --node NAME",
		Short: "Run the node agent: program workloads, routes and policy into the kernel",
		Long: `Run the node agent for one node until interrupted. It follows the datastore,
compiles the policy of the node's endpoints, and programs nftables, routes and
the host side of workload interfaces in its network namespace. It starts by
reading everything, then reconciles the kernel without flushing, so a restart
never interrupts established flows. Settings come from the Configuration
resources "default" and "node.NAME" (see docs/agent.md).`,
		Example: `  tabby agent --node node-1
  tabby agent --node node-1 --endpoints https://10.0.0.1:2379 --cacert ca.pem --cert c.pem --key k.pem
  ip netns exec node-1 tabby agent --node node-1 --health-addr 127.0.0.1:9099`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Defaults()
			if err := cfg.Validate(); err != nil {
				return err
			}
			log := a.loggerAt(slog.LevelInfo)
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Store().Close()
			if es, ok := c.Store().(*etcd.Store); ok {
				el, err := es.NewElection("ipam-gc", cfg.NodeName, 15*time.Second)
				if err != nil {
					return err
				}
				cfg.GCElection = el
			}
			for {
				ag, err := agent.New(cfg, c.Store(), log)
				if err != nil {
					return err
				}
				err = ag.Run(ctx)
				if errors.Is(err, agent.ErrRestart) && ctx.Err() == nil {
					fmt.Fprintln(a.streams.err, "tabby agent: settings changed, restarting")
					continue
				}
				return err
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.NodeName, "node", "", "name of this node (required)")
	fl.StringVar(&cfg.NetNSPath, "netns", "", "network namespace to program (default: the agent's own)")
	fl.StringVar(&cfg.HealthAddr, "health-addr", "127.0.0.1:9099", `address for /healthz, /readyz and /metrics; "" turns it off`)
	fl.BoolVar(&cfg.DisableBGP, "no-bgp", false, "do not run the BGP speaker")
	fl.StringVar(&cfg.IPv4Autodetection, "ipv4-autodetection", "", "how to find the node's IPv4 address if its Node has none: first-found, interface=REGEX, can-reach=DEST, cidr=CIDR or none")
	fl.StringVar(&cfg.IPv6Autodetection, "ipv6-autodetection", "", "the same for IPv6 (default none)")
	fl.StringVar(&cfg.StatusSocket, "status-socket", "", "unix socket for endpoint status (default /run/tabby/NODE/agent.sock)")
	return cmd
}
