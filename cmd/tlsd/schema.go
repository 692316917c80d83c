package main

import (
	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/schema"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of configuration documents",
		Long: `Schema prints the JSON Schema (draft-07) that tlsd validates documents against.
Save it next to your endpoint files and point editors at it with a first line like:

  # yaml-language-server: $schema=./endpoint.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(schema.JSON)
			return err
		},
	}
}
