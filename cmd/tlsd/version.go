package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/version"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tlsd's version, VCS revision and build time",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "tlsd", versionString())
		},
	}
}

func versionString() string { return version.Get().String() }
