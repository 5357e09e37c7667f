package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/lab"
)

func newLabMoveCommand(a *app, lf *labFlags) *cobra.Command {
	var cfg lab.MoveConfig
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "move WORKLOAD --node NODE [--probe-from WORKLOAD] [--json]",
		Short: "Live-migrate a workload to another node, keeping its addresses, and report the connectivity gap",
		Long: `Move a workload to another node as a VM's live migration does: its
namespace stays, its IPv4 and IPv6 addresses go from the old attachment's
IPAM handle to the new one's without ever being free, its eth0 is
re-created by CNI ADD on the new node while CNI DEL removes the old
attachment on the old one, and the new WorkloadEndpoint (same labels, so
policy follows) is advertised with elevated route priority until the old
one is gone.

Meanwhile a probe stream (ICMP echo every 10ms, IPv4 and IPv6, an answer
counts within 100ms) runs from another workload (--probe-from; default:
the first that gets an ICMP answer now, preferring one on neither node,
then one on the old node) to the moving one; the
longest interval without an answer is the connectivity gap. The command
exits with status 1 if connectivity did not come back within 5s.`,
		Example: `  tabby lab move web --node n2
  tabby lab move web --node n1 --probe-from db --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := lf.labName()
			if err != nil {
				return err
			}
			cfg.Workload = args[0]
			out := a.streams.out
			if !asJSON {
				cfg.Step = func(step string, took time.Duration) {
					fmt.Fprintf(out, "  %-7s %s\n", took.Round(time.Millisecond), step)
				}
				cfg.Begin = func(workload, from, to, probeFrom string) {
					fmt.Fprintf(out, "moving %s from %s to %s", workload, from, to)
					if probeFrom != "" {
						fmt.Fprintf(out, " while %s probes it", probeFrom)
					}
					fmt.Fprintln(out)
				}
			}
			res, err := lab.Move(cmd.Context(), name, cfg)
			if res != nil && asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(res); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				printMove(out, res)
			}
			if p := res.Probe; p != nil {
				for _, f := range p.Families {
					if f.Baseline && !f.Restored {
						fmt.Fprintf(a.streams.err, "error: %s does not reach %s (IPv%d) since the move\n", p.From, res.Workload, f.Family)
						return exitError{code: 1}
					}
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Node, "node", "", "node to move to (required)")
	_ = cmd.MarkFlagRequired("node")
	fl.StringVar(&cfg.ProbeFrom, "probe-from", "", "workload that probes the moving one during the move (default: the first that gets an ICMP answer now, preferring one on neither node)")
	fl.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "give up after this long")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON (durations in nanoseconds)")
	return cmd
}

func printMove(out interface{ Write([]byte) (int, error) }, res *lab.MoveResult) {
	addrs := []string{res.IPv4.String()}
	if res.IPv6.IsValid() {
		addrs = append(addrs, res.IPv6.String())
	}
	fmt.Fprintf(out, "workload %s moved from %s to %s in %s, keeping %s (endpoint %s, host interface %s)\n",
		res.Workload, res.From, res.To, res.Took.Round(time.Millisecond), strings.Join(addrs, ", "), res.Endpoint, res.Interface)
	p := res.Probe
	if p == nil {
		fmt.Fprintln(out, res.NoProbe)
		return
	}
	var parts []string
	measured := false
	for _, f := range p.Families {
		switch {
		case !f.Baseline:
			parts = append(parts, fmt.Sprintf("IPv%d not measured: no answer before the move", f.Family))
		case !f.Restored:
			parts = append(parts, fmt.Sprintf("IPv%d NOT RESTORED after %s", f.Family, f.Gap.Round(time.Millisecond)))
			measured = true
		default:
			parts = append(parts, fmt.Sprintf("IPv%d %s, %d of %d probes answered", f.Family, f.Gap.Round(time.Millisecond), f.Answered, f.Sent))
			measured = true
		}
	}
	if measured {
		fmt.Fprintf(out, "connectivity gap %s seen from %s (ICMP every %s): %s\n", p.Gap.Round(time.Millisecond), p.From, p.Interval, strings.Join(parts, "; "))
	} else {
		fmt.Fprintf(out, "no connectivity gap measured from %s: %s\n", p.From, strings.Join(parts, "; "))
	}
}
