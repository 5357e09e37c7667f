package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/bench"
)

func newBenchCommand(a *app) *cobra.Command {
	var quick bool
	var jsonPath string
	var runs int
	var list []string
	for _, s := range bench.Suites() {
		list = append(list, fmt.Sprintf("  %-10s %s", s[0], s[1]))
	}
	cmd := &cobra.Command{
		Use:   "bench SUITE... [--json FILE] [--quick]",
		Short: "Run system benchmark suites on labs the command creates and removes",
		Long: `Run one or more system benchmark suites. Each suite builds the labs it
needs (tabby lab, with names starting "bench"), measures, removes them
again, and prints the median and min/max of each result over its runs,
next to its goal. Needs root. "all" runs every suite in turn.

Suites:
` + strings.Join(list, "\n") + `

--quick runs each suite small, as a smoke test of the whole path: its
numbers say nothing. See docs/benchmarks.md for a full run.`,
		Example: `  sudo tabby bench setup
  sudo tabby bench all --json bench.json
  sudo tabby bench dataplane --quick`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "all" {
				args = nil
				for _, s := range bench.Suites() {
					args = append(args, s[0])
				}
			}
			if runs < 0 {
				return fmt.Errorf("--runs: %d: must be 1 or more (0 for the default)", runs)
			}
			// Check every name before running anything.
			for _, name := range args {
				if err := bench.CheckSuite(name); err != nil {
					return fmt.Errorf("SUITE: %w", err)
				}
			}
			var reports []*bench.Report
			var errs []error
			for _, name := range args {
				r, err := bench.Run(cmd.Context(), name, bench.Options{
					Quick: quick, Runs: runs, Progress: a.streams.err, Log: a.logger(),
				})
				if r != nil {
					reports = append(reports, r)
					if werr := r.WriteTable(a.streams.out); werr != nil {
						return werr
					}
					fmt.Fprintln(a.streams.out)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("suite %s: %w", name, err))
				}
			}
			if jsonPath != "" {
				if err := bench.WriteJSON(jsonPath, reports); err != nil {
					errs = append(errs, fmt.Errorf("--json: %w", err))
				}
			}
			return errors.Join(errs...)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&quick, "quick", false, "run each suite small, as a smoke test (no meaningful numbers)")
	fl.StringVar(&jsonPath, "json", "", "also write the reports as JSON to this file")
	fl.IntVar(&runs, "runs", 0, "repeat each measurement this many times (default 3, 1 with --quick)")
	return cmd
}
