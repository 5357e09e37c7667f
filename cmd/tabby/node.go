package main

import (
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/agent"
)

func newNodeCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Show the state of a node's agent",
	}
	cmd.AddCommand(newNodeStatusCommand(a))
	return cmd
}

func newNodeStatusCommand(a *app) *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "status [NODE]",
		Short: "Show the agent's readiness and BGP sessions of a node (default: this host)",
		Long: `Show the agent's readiness and a table of its BGP sessions: peer, type (mesh,
route reflector, global or node peer), state, uptime, and routes received and
advertised. It asks the node's agent over its status socket, so run it on the
node (or, in a lab, anywhere on the machine).`,
		Example: `  tabby node status
  tabby node status node-2
  tabby node status --status-socket /run/tabby/node-1/agent.sock`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := ""
			if len(args) == 1 {
				node = args[0]
			} else if h, err := os.Hostname(); err == nil {
				node = h
			}
			if socket == "" {
				if node == "" {
					return fmt.Errorf("NODE: give a node name or --status-socket")
				}
				socket = agent.StatusSocketPath(node)
			}
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			c := agent.NewStatusClient(socket)
			st, err := c.Status(ctx)
			if err != nil {
				return fmt.Errorf("%w (is the agent of node %q running?)", err, node)
			}
			peers, err := c.BGP(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.out, "Node %s: ready=%t inSync=%t datastore=%t endpoints=%d programmed=%d\n",
				st.Node, st.Ready, st.InSync, st.DatastoreOK, st.Endpoints, st.Programmed)
			if st.LastApplyError != "" {
				fmt.Fprintf(a.streams.out, "Last apply error: %s\n", st.LastApplyError)
			}
			fmt.Fprintln(a.streams.out)
			if len(peers) == 0 {
				fmt.Fprintln(a.streams.out, "No BGP sessions.")
				return nil
			}
			tw := tabwriter.NewWriter(a.streams.out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "PEER\tASN\tTYPE\tSTATE\tUPTIME\tRECEIVED\tADVERTISED")
			for _, p := range peers {
				up := "-"
				if p.Uptime > 0 {
					up = p.Uptime.Truncate(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Peer, p.ASNumber, p.Type, p.State, up,
					strconv.Itoa(p.RoutesReceived), strconv.Itoa(p.RoutesAdvertised))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&socket, "status-socket", "", "the agent's status socket (default /run/tabby/NODE/agent.sock)")
	return cmd
}
