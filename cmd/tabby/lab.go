package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/cliconfig"
	"github.com/tabbynet/tabby/internal/lab"
)

// labFlags are the flags every lab subcommand shares.
type labFlags struct{ name string }

func newLabCommand(a *app) *cobra.Command {
	lf := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a multi-node Tabby cluster in network namespaces on this machine",
		Long: `A lab is a whole Tabby cluster on one machine: a fabric namespace with a
bridge, one namespace per node running ` + "`tabby agent`" + ` (BGP mesh over the
fabric), the datastore, and workloads in namespaces of their own. Everything
a lab creates carries its name (namespaces tl-NAME-…, state in
/run/tabby/lab/NAME) and ` + "`tabby lab down`" + ` removes all of it. See docs/lab.md.`,
		Example: `  tabby lab up --nodes 3
  tabby lab run web --node n1 --labels app=web --serve tcp:80
  tabby lab run db --node n2 --labels app=db --serve tcp:5432
  tabby lab probe web db --proto tcp --port 5432
  tabby lab matrix --proto tcp --port 80
  tabby lab down`,
	}
	cmd.PersistentFlags().StringVar(&lf.name, "name", "", `the lab (default: the only lab, or "lab")`)
	cmd.AddCommand(
		newLabUpCommand(a, lf),
		newLabDownCommand(a, lf),
		newLabLsCommand(a),
		newLabRunCommand(a, lf),
		newLabExecCommand(a, lf),
		newLabProbeCommand(a, lf),
		newLabMatrixCommand(a, lf),
		newLabMoveCommand(a, lf),
		newLabRmCommand(a, lf),
		newLabServeCommand(a),
		newLabRelayCommand(a),
	)
	return cmd
}

// labName resolves --name: the flag, else the only lab, else "lab".
func (lf *labFlags) labName() (string, error) {
	if lf.name != "" {
		return lf.name, lab.CheckName(lf.name)
	}
	labs, err := lab.List()
	if err != nil {
		return "", err
	}
	switch len(labs) {
	case 0:
		return "lab", nil
	case 1:
		return labs[0].Name, nil
	}
	var names []string
	for _, l := range labs {
		names = append(names, l.Name)
	}
	return "", fmt.Errorf("several labs exist (%s): say which with --name", strings.Join(names, ", "))
}

func (lf *labFlags) load() (*lab.State, error) {
	name, err := lf.labName()
	if err != nil {
		return nil, err
	}
	return lab.Load(name)
}

func labContextName(name string) string { return "lab-" + name }

func newLabUpCommand(a *app, lf *labFlags) *cobra.Command {
	var cfg lab.Config
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "up [--name NAME] [--nodes N] [--ipv6] [--fabric l2|tor] [--racks R] [--route-reflectors R]",
		Short: "Create a lab and wait until its BGP sessions are established",
		Long: `Create a lab: the fabric, the nodes, the datastore and an agent per node;
write the default IP pools, BGP configuration and nodes; wait until every
agent is ready and every BGP session established. The datastore, the
agents and a relay for the CLI keep running in the background after the
command returns. The context lab-NAME is written to the config file and
made current, so ` + "`tabby get nodes`" + ` talks to the lab.

With --fabric tor the nodes are spread round robin over --racks racks,
each with a BIRD top-of-rack router (t1, t2, …) that peers eBGP with its
nodes (each in an AS of its own, mesh off) and with the other ToRs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Name = lf.name
			if cfg.Name == "" {
				cfg.Name = "lab"
			}
			out := a.streams.out
			start := time.Now()
			checked := cfg
			checked.Defaults()
			if err := checked.Validate(); err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(out, "lab %s: starting %d nodes (fabric %s)\n", cfg.Name, cfg.Nodes, cfg.Fabric)
				cfg.Step = func(step string, took time.Duration) {
					fmt.Fprintf(out, "  %-6s %s\n", took.Round(time.Millisecond), step)
				}
			}
			cfg.Log = a.logger()
			st, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := a.saveLabContext(st.Name, st.ClientURL); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(out, "lab %s is up after %s\n\n", st.Name, time.Since(start).Round(time.Millisecond))
			printNodes(out, st)
			fmt.Fprintf(out, `
context %s is now current: tabby get nodes
next:   tabby lab run web --node %s --labels app=web --serve tcp:80
        tabby lab matrix --proto tcp --port 80
        tabby lab down --name %s
`, labContextName(st.Name), st.Nodes[0].Name, st.Name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Nodes, "nodes", 2, "number of nodes")
	fl.BoolVar(&cfg.IPv6, "ipv6", false, "dual-stack: IPv6 fabric addresses, an IPv6 pool and IPv6 workload addresses")
	fl.StringVar(&cfg.Fabric, "fabric", "l2", "fabric between the nodes: l2 (one bridge) or tor (racks, each with a BIRD top-of-rack router)")
	fl.IntVar(&cfg.Racks, "racks", 0, "racks of --fabric tor (default 2, or --nodes if fewer)")
	fl.IntVar(&cfg.RouteReflectors, "route-reflectors", 0, "with --fabric l2: turn the node-to-node mesh off and make n1..nR route reflectors for the other nodes")
	fl.StringVar(&cfg.Pool4, "pool", "10.65.0.0/16", "IPv4 pool for workloads")
	fl.StringVar(&cfg.Pool6, "ipv6-pool", "fd00:65::/48", "IPv6 pool for workloads (with --ipv6)")
	fl.DurationVar(&cfg.Timeout, "timeout", 90*time.Second, "give up (and clean up) after this long")
	fl.BoolVar(&asJSON, "json", false, "print the lab's state as JSON instead of a summary")
	return cmd
}

func (a *app) saveLabContext(name, url string) error {
	path := a.configPath()
	f, err := cliconfig.Load(path)
	if err != nil {
		return err
	}
	f.SetContext(cliconfig.Context{Name: labContextName(name), Datastore: cliconfig.Datastore{Endpoints: []string{url}}})
	f.CurrentContext = labContextName(name)
	return f.Save(path)
}

func printNodes(out interface{ Write([]byte) (int, error) }, st *lab.State) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNETNS\tIPV4\tIPV6\tAGENT PID")
	for _, n := range st.Nodes {
		v6 := "-"
		if n.IPv6.IsValid() {
			v6 = n.IPv6.String()
		}
		pid := 0
		if n.Agent != nil {
			pid = n.Agent.PID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.Name+rackOf(n), n.NetNS, n.IPv4, v6, pid)
	}
	for _, t := range st.ToRs {
		pid := 0
		if t.Bird != nil {
			pid = t.Bird.PID
		}
		fmt.Fprintf(tw, "%s (ToR of %s, AS %d)\t%s\t%s\t%s\t%d\n", t.Name, t.Rack, t.AS, t.NetNS, t.Gateway4, orDash(t.Gateway6), pid)
	}
	tw.Flush()
}

// orDash prints an address, or "-" if there is none.
func orDash(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// rackOf is " (rR, AS N)" for a node of --fabric tor, else "".
func rackOf(n lab.Node) string {
	if n.Rack == "" {
		return ""
	}
	return fmt.Sprintf(" (%s, AS %d)", n.Rack, n.AS)
}

func newLabDownCommand(a *app, lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down [--name NAME]",
		Short: "Stop a lab's processes and remove its namespaces, state and context",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := lf.labName()
			if err != nil {
				return err
			}
			start := time.Now()
			warn := func(err error) { fmt.Fprintf(a.streams.err, "warning: %v\n", err) }
			if err := lab.Down(name, warn); err != nil {
				return err
			}
			path := a.configPath()
			if f, err := cliconfig.Load(path); err == nil && f.DeleteContext(labContextName(name)) {
				if err := f.Save(path); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.streams.out, "lab %s removed in %s\n", name, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}

func newLabLsCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the labs on this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			labs, err := lab.List()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.streams.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNODES\tWORKLOADS\tFABRIC\tIPV6\tPROCESSES\tDATASTORE\tCREATED")
			for _, l := range labs {
				procs := l.Procs()
				alive := 0
				for _, p := range procs {
					if p.Alive() {
						alive++
					}
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v\t%d/%d running\t%s\t%s\n", l.Name, len(l.Nodes), len(l.Workloads),
					l.Fabric, l.IPv6, alive, len(procs), l.ClientURL, l.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func newLabRunCommand(a *app, lf *labFlags) *cobra.Command {
	var cfg lab.WorkloadConfig
	var labels, ips []string
	cmd := &cobra.Command{
		Use:   "run NAME --node NODE [--namespace NS] [--labels k=v,...] [--serve tcp:80,udp:53] [--ip ADDR]",
		Short: "Run a workload in its own namespace on a node of the lab",
		Long: `Create a workload namespace and attach it to NODE through Tabby's CNI
plugin (ADD through libcni, from inside the node's namespace, with the
node's network configuration that lab up installed): a veth, a /32 and a
/128 from IPAM, and a WorkloadEndpoint with the given labels and the open
profile lab-open (a namespace other than default gets the allow-all
profile kns.NS instead). The plugin returns once the node's agent has
programmed the endpoint. With --serve, start echo servers in it. --ip
reserves the address for the plugin's IPAM handle before ADD.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := lf.labName()
			if err != nil {
				return err
			}
			cfg.Name = args[0]
			cfg.Labels = map[string]string{}
			for _, kv := range labels {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--labels %q: want key=value", kv)
				}
				cfg.Labels[k] = v
			}
			for _, s := range ips {
				addr, err := parseAddr(s)
				if err != nil {
					return fmt.Errorf("--ip: %w", err)
				}
				cfg.IPs = append(cfg.IPs, addr)
			}
			start := time.Now()
			w, err := lab.Run(cmd.Context(), name, cfg)
			if err != nil {
				return err
			}
			addrs := []string{w.IPv4.String()}
			if w.IPv6.IsValid() {
				addrs = append(addrs, w.IPv6.String())
			}
			fmt.Fprintf(a.streams.out, "workload %s on %s: %s (netns %s, host interface %s, endpoint %s/%s) ready in %s\n",
				w.ID(), w.Node, strings.Join(addrs, ", "), w.NetNS, w.Interface, w.Namespace, w.Endpoint, time.Since(start).Round(time.Millisecond))
			if len(w.Serve) > 0 {
				fmt.Fprintf(a.streams.out, "  serving %s (pid %d)\n", strings.Join(w.Serve, ","), w.Server.PID)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Node, "node", "", "node to run on (required)")
	_ = cmd.MarkFlagRequired("node")
	fl.StringVar(&cfg.Namespace, "namespace", "default", "namespace of the WorkloadEndpoint")
	fl.StringSliceVar(&labels, "labels", nil, "labels, k=v,...")
	fl.StringSliceVar(&cfg.Serve, "serve", nil, "echo servers to run, tcp:PORT,udp:PORT,...")
	fl.StringSliceVar(&ips, "ip", nil, "address to use instead of one from IPAM (one per family)")
	return cmd
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%q is not an IP address", s)
	}
	return a, nil
}

// nsOf finds the namespace of a workload, a node or "fabric".
func nsOf(st *lab.State, ref string) (string, error) {
	if w, ok := st.Workload(ref); ok {
		return w.NetNS, nil
	}
	if n, ok := st.Node(ref); ok {
		return n.NetNS, nil
	}
	if t, ok := st.ToR(ref); ok {
		return t.NetNS, nil
	}
	if ref == "fabric" {
		return st.FabricNS, nil
	}
	return "", fmt.Errorf("lab %s has no workload or node %q", st.Name, ref)
}

func newLabRmCommand(a *app, lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm WORKLOAD...",
		Short: "Remove workloads: CNI DEL, their echo servers and their namespaces",
		Long: `Remove workloads from the lab the way a container runtime does: stop their
echo servers, detach them through the CNI plugin (DEL: the veth, the
WorkloadEndpoint and the addresses go), and delete their namespaces.
Every name is checked first; an unknown one removes nothing.`,
		Example: `  tabby lab rm web
  tabby lab rm prod/db default/web`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lf.load()
			if err != nil {
				return err
			}
			if err := lab.RemoveBatch(cmd.Context(), st.Name, args, lab.BatchOptions{}); err != nil {
				return err
			}
			for _, ref := range args {
				fmt.Fprintf(a.streams.out, "workload %s removed\n", ref)
			}
			return nil
		},
	}
}

func newLabExecCommand(a *app, lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "exec WORKLOAD|NODE|TOR|fabric -- CMD [ARG...]",
		Short: "Run a command in the namespace of a workload, a node, a top-of-rack router or the fabric",
		Example: `  tabby lab exec web -- ip addr
  tabby lab exec n1 -- ip route
  tabby lab exec n1 -- nft list ruleset`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lf.load()
			if err != nil {
				return err
			}
			ns, err := nsOf(st, args[0])
			if err != nil {
				return err
			}
			c := exec.CommandContext(cmd.Context(), "ip", append([]string{"netns", "exec", ns}, args[1:]...)...)
			c.Stdin, c.Stdout, c.Stderr = a.streams.in, a.streams.out, a.streams.err
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return exitError{code: ee.ExitCode()}
				}
				return err
			}
			return nil
		},
	}
}

type probeFlags struct {
	spec     lab.ProbeSpec
	parallel int
	noWait   bool
}

func (pf *probeFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&pf.spec.Proto, "proto", "tcp", "tcp (connect and echo), udp (send and expect the echo) or icmp (ping)")
	fl.IntVar(&pf.spec.Port, "port", 80, "port for tcp and udp")
	fl.IntVar(&pf.spec.Family, "family", 4, "address family of the destination, 4 or 6")
	fl.DurationVar(&pf.spec.Timeout, "timeout", time.Second, "how long to wait for an answer")
	fl.BoolVar(&pf.noWait, "no-wait", false, "probe at once instead of first waiting until every agent has applied the datastore's latest state")
}

// converge waits until every agent has applied the datastore's latest
// state, unless --no-wait.
func (pf *probeFlags) converge(cmd *cobra.Command, st *lab.State) error {
	if pf.noWait {
		return nil
	}
	return lab.WaitConverged(cmd.Context(), st)
}

func newLabProbeCommand(a *app, lf *labFlags) *cobra.Command {
	var pf probeFlags
	cmd := &cobra.Command{
		Use:   "probe FROM TO [--proto tcp|udp|icmp] [--port P] [--family 4|6]",
		Short: "Check whether FROM reaches TO (a workload or an address); exit status 0 or 1",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lf.load()
			if err != nil {
				return err
			}
			if err := pf.converge(cmd, st); err != nil {
				return err
			}
			p := pf.spec
			p.From, p.To = args[0], args[1]
			err = lab.Probe(cmd.Context(), st, p)
			what := p.Proto
			if p.Proto != "icmp" {
				what = fmt.Sprintf("%s/%d", p.Proto, p.Port)
			}
			if err != nil {
				if errors.Is(err, lab.ErrUsage) {
					return err
				}
				fmt.Fprintf(a.streams.out, "denied   %s -> %s %s (IPv%d): %v\n", p.From, p.To, what, p.Family, err)
				return exitError{code: 1}
			}
			fmt.Fprintf(a.streams.out, "allowed  %s -> %s %s (IPv%d)\n", p.From, p.To, what, p.Family)
			return nil
		},
	}
	pf.add(cmd)
	return cmd
}

func newLabMatrixCommand(a *app, lf *labFlags) *cobra.Command {
	var pf probeFlags
	var expect string
	cmd := &cobra.Command{
		Use:   "matrix [--proto P --port P] [--expect FILE]",
		Short: "Probe every pair of workloads and print who reaches whom",
		Long: `Probe from every workload to every other one (in parallel) and print the
truth table: rows are sources, columns destinations. With --expect FILE,
compare with the lines "FROM TO allow|deny" of FILE (# starts a comment)
and exit with status 1 if any pair differs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lf.load()
			if err != nil {
				return err
			}
			if len(st.Workloads) < 2 {
				return errors.New("the lab needs two workloads or more (tabby lab run)")
			}
			var want map[[2]string]bool
			if expect != "" {
				if want, err = readExpect(st, expect); err != nil {
					return err
				}
			}
			if err := pf.converge(cmd, st); err != nil {
				return err
			}
			pairs := lab.Matrix(cmd.Context(), st, pf.spec, pf.parallel)
			got := map[[2]string]bool{}
			for _, p := range pairs {
				got[[2]string{p.From, p.To}] = p.Allowed
			}
			out := a.streams.out
			what := pf.spec.Proto
			if what != "icmp" {
				what = fmt.Sprintf("%s/%d", what, pf.spec.Port)
			}
			fmt.Fprintf(out, "%s IPv%d, rows: from, columns: to\n", what, pf.spec.Family)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprint(tw, "")
			for _, w := range st.Workloads {
				fmt.Fprintf(tw, "\t%s", w.ID())
			}
			fmt.Fprintln(tw)
			for _, from := range st.Workloads {
				fmt.Fprint(tw, from.ID())
				for _, to := range st.Workloads {
					cell := "."
					if from.ID() != to.ID() {
						cell = "deny"
						if got[[2]string{from.ID(), to.ID()}] {
							cell = "allow"
						}
					}
					fmt.Fprintf(tw, "\t%s", cell)
				}
				fmt.Fprintln(tw)
			}
			tw.Flush()
			if want == nil {
				return nil
			}
			bad := 0
			for _, p := range pairs {
				w, ok := want[[2]string{p.From, p.To}]
				if ok && w != p.Allowed {
					bad++
					fmt.Fprintf(out, "MISMATCH %s -> %s: expected %s, got %s\n", p.From, p.To, verdict(w), verdict(p.Allowed))
				}
			}
			if bad > 0 {
				return exitError{code: 1}
			}
			fmt.Fprintln(out, "matches", expect)
			return nil
		},
	}
	pf.add(cmd)
	cmd.Flags().IntVar(&pf.parallel, "parallel", 16, "probes at a time")
	cmd.Flags().StringVar(&expect, "expect", "", `file of "FROM TO allow|deny" lines to compare with`)
	return cmd
}

func verdict(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}

func readExpect(st *lab.State, path string) (map[[2]string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[[2]string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		if len(fs) != 3 || !slices.Contains([]string{"allow", "deny"}, fs[2]) {
			return nil, fmt.Errorf("%s:%d: want FROM TO allow|deny", path, n)
		}
		var ids [2]string
		for i, ref := range fs[:2] {
			w, ok := st.Workload(ref)
			if !ok {
				return nil, fmt.Errorf("%s:%d: no workload %q", path, n, ref)
			}
			ids[i] = w.ID()
		}
		want[ids] = fs[2] == "allow"
	}
	return want, sc.Err()
}

func newLabServeCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "serve tcp:PORT,udp:PORT,...",
		Short:  "Run echo servers in this namespace (started by lab run --serve)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.Serve(cmd.Context(), strings.Split(args[0], ","), a.loggerAt(slog.LevelInfo))
		},
	}
}

func newLabRelayCommand(a *app) *cobra.Command {
	var fd int
	var nsPath, to string
	cmd := &cobra.Command{
		Use:    "relay --listen-fd N --netns PATH --to HOST:PORT",
		Short:  "Forward connections from an inherited listener to an address inside a namespace",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := os.NewFile(uintptr(fd), "listener")
			if f == nil {
				return fmt.Errorf("--listen-fd %d: not open", fd)
			}
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("--listen-fd %d: %w", fd, err)
			}
			return lab.Relay(cmd.Context(), ln, nsPath, to, a.loggerAt(slog.LevelInfo))
		},
	}
	cmd.Flags().IntVar(&fd, "listen-fd", 3, "inherited listening socket")
	cmd.Flags().StringVar(&nsPath, "netns", "", "namespace to connect from")
	cmd.Flags().StringVar(&to, "to", "", "address to connect to")
	return cmd
}
