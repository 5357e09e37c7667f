package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	v1 "github.com/tabbynet/tabby/api/v1"
)

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of tabby",
		Example: "  tabby version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.streams.out, "tabby %s (api %s, %s, %s/%s)\n", version, v1.APIVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
