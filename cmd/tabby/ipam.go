package main

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/ipam"
)

func newIPAMCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show, check and repair IP address management",
		Long: `Show, check and repair IP address management.

Pools are cut into blocks that nodes claim; each workload address belongs to
a handle. See docs/ipam.md.`,
		Example: `  tabby ipam show
  tabby ipam show --blocks --borrowed
  tabby ipam check
  tabby ipam release --handle k8s-pod-network.4f1c0a
  tabby ipam release --ip 10.65.3.7`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newIPAMShowCommand(a), newIPAMCheckCommand(a), newIPAMReleaseCommand(a))
	return cmd
}

func newIPAMShowCommand(a *app) *cobra.Command {
	var blocks, borrowed bool
	cmd := &cobra.Command{
		Use:   "show [--blocks] [--borrowed]",
		Short: "Show address use per pool and per node",
		Long: `Show address use per IP pool and per node, read at one datastore revision.

--blocks adds every block with its pool, affinity and use; --borrowed adds every
address allocated for a node in a block affine to another node (or to none).`,
		Example: `  tabby ipam show
  tabby ipam show --blocks
  tabby ipam show --borrowed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			u, err := ipam.ReadUsage(ctx, c.Store())
			if err != nil {
				return err
			}
			return printUsage(a.streams.out, u, blocks, borrowed)
		},
	}
	cmd.Flags().BoolVar(&blocks, "blocks", false, "also list every block")
	cmd.Flags().BoolVar(&borrowed, "borrowed", false, "also list borrowed addresses")
	return cmd
}

// printUsage prints the sections of `ipam show` as aligned tables.
func printUsage(w io.Writer, u *ipam.Usage, blocks, borrowed bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "POOL\tCIDR\tBLOCK SIZE\tDISABLED\tBLOCKS\tALLOCATED\tFREE IN BLOCKS\tCAPACITY\tUSED")
	for _, p := range u.Pools {
		fmt.Fprintf(tw, "%s\t%s\t/%d\t%v\t%d\t%d\t%d\t%s\t%s\n", p.Name, p.CIDR, p.BlockSize, p.Disabled,
			p.Blocks, p.Allocated, p.InBlocks-p.Allocated, p.Capacity, percent(p.Allocated, p.Capacity))
	}
	if len(u.Pools) == 0 {
		fmt.Fprintln(tw, "(no IP pools)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tBLOCKS\tPENDING\tALLOCATED\tFREE\tBORROWED\tLENT")
	for _, n := range u.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", n.Node, n.Blocks, n.Pending, n.Allocated, n.Free, n.Borrowed, n.Lent)
	}
	if len(u.Nodes) == 0 {
		fmt.Fprintln(tw, "(no node has blocks or addresses)")
	}
	if blocks {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "BLOCK\tPOOL\tAFFINITY\tIN USE\tSIZE\tBORROWED")
		for _, b := range u.Blocks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", b.CIDR, dash(b.Pool), dash(b.Affinity), b.InUse, b.Size, b.Borrowed)
		}
	}
	if borrowed {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "ADDRESS\tBLOCK\tBLOCK AFFINITY\tNODE\tHANDLE")
		for _, b := range u.Borrowed {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Addr, b.Block, dash(b.BlockAffinity), dash(b.Node), b.Handle)
		}
		if len(u.Borrowed) == 0 {
			fmt.Fprintln(tw, "(none)")
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// percent formats n/total as a percentage with two decimals.
func percent(n int, total *big.Int) string {
	if total.Sign() == 0 {
		return "-"
	}
	r := new(big.Rat).SetFrac(big.NewInt(int64(n)*100), total)
	return r.FloatString(2) + "%"
}

func newIPAMCheckCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Report IPAM inconsistencies; exit status 0 only when clean",
		Long: `Read the whole datastore at one revision and report:

  leaked addresses            allocated addresses that no handle records
  handles without allocations handles that record addresses no block holds
  allocations without endpoint allocated addresses no workload endpoint uses
  duplicates                  addresses allocated twice, used by two endpoints,
                              or used by an endpoint without being allocated
  inconsistent                undecodable objects, blocks and affinities that
                              disagree, allocations outside every pool

The exit status is 0 when nothing is found and 1 otherwise. On a live
cluster, a workload being created may show up for a moment as an allocation
without endpoint; GC releases real leaks after its grace period.`,
		Example: `  tabby ipam check
  tabby ipam check && echo clean`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			r, err := ipam.Check(ctx, c.Store())
			if err != nil {
				return err
			}
			printReport(a.streams.out, r)
			if !r.Clean() {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

// printReport prints a Check report: a summary line, then one section
// per kind of problem found.
func printReport(w io.Writer, r *ipam.Report) {
	fmt.Fprintf(w, "Checked %d blocks, %d allocated addresses, %d handles and %d workload endpoints at revision %d.\n",
		r.Blocks, r.Allocated, r.Handles, r.Endpoints, r.Revision)
	problems := 0
	for _, sec := range []struct {
		title string
		fs    []ipam.Finding
	}{
		{"Leaked addresses", r.Leaked},
		{"Handles without allocations", r.HandlesWithoutAllocations},
		{"Allocations without endpoint", r.AllocationsWithoutEndpoint},
		{"Duplicates", r.Duplicates},
		{"Inconsistent objects", r.Inconsistent},
	} {
		if len(sec.fs) == 0 {
			continue
		}
		problems += len(sec.fs)
		fmt.Fprintf(w, "\n%s (%d):\n", sec.title, len(sec.fs))
		for _, f := range sec.fs {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if problems == 0 {
		fmt.Fprintln(w, "Clean: no problems found.")
		return
	}
	fmt.Fprintf(w, "\n%d problem(s) found.\n", problems)
}

func newIPAMReleaseCommand(a *app) *cobra.Command {
	var ips []string
	var handle string
	cmd := &cobra.Command{
		Use:   "release (--ip IP [--ip IP…] | --handle HANDLE)",
		Short: "Release addresses by address or by handle",
		Long: `Release addresses by address or by handle. Releasing what is not allocated
does nothing, so the command is idempotent. Release only addresses whose
workload is gone: the address may be handed out again at once (or after the
releaseCooldownSeconds of the IPAMConfiguration).`,
		Example: `  tabby ipam release --ip 10.65.3.7
  tabby ipam release --ip 10.65.3.7 --ip fd00:10:65::3:7
  tabby ipam release --handle k8s-pod-network.4f1c0a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (len(ips) == 0) == (handle == "") {
				return errors.New("give either --ip or --handle")
			}
			var addrs []netip.Addr
			for _, s := range ips {
				addr, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("--ip %q: not an IP address", s)
				}
				addrs = append(addrs, addr)
			}
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			alloc, err := ipam.New(c.Store(), ipam.Config{Logger: a.logger()})
			if err != nil {
				return err
			}
			var released []netip.Addr
			if handle != "" {
				released, err = alloc.ReleaseHandle(ctx, handle)
			} else {
				released, err = alloc.ReleaseIPs(ctx, addrs...)
			}
			for _, r := range released {
				fmt.Fprintf(a.streams.out, "%s released\n", r)
			}
			if err != nil {
				return err
			}
			switch {
			case handle != "" && len(released) == 0:
				fmt.Fprintf(a.streams.out, "handle %q holds no addresses\n", handle)
			case handle == "":
				for _, addr := range addrs {
					if !slices.Contains(released, addr.Unmap()) {
						fmt.Fprintf(a.streams.out, "%s was not allocated\n", addr)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&ips, "ip", nil, "address to release; repeatable or comma-separated")
	cmd.Flags().StringVar(&handle, "handle", "", "handle whose addresses to release")
	return cmd
}
