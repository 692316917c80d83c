// Command tlsd is a self-hosted TLS endpoint daemon: it routes TLS connections by SNI and
// terminates TLS at the edge, at the agent, or not at all (zero-knowledge), configured by a
// directory of YAML files. This package only parses flags, wires packages and prints.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes shared by the commands.
const (
	exitOK      = 0
	exitInvalid = 1 // the configuration has errors
	exitUsage   = 2 // bad flags or arguments, or I/O errors
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error // nil when the command already printed everything
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "tlsd:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "tlsd:", err)
	return exitUsage
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "tlsd",
		Short: "A self-hosted TLS endpoint daemon, configured by a directory of YAML files",
		Long: `tlsd routes TLS connections by SNI to upstreams and terminates TLS where each
endpoint says: at the edge (custom or automatic certificates, optional mutual TLS),
at the agent, or not at all ("upstream", the default: zero-knowledge passthrough).

Endpoints live in YAML files (apiVersion: tlsd/v1), usually in a git repository.
Check them in CI with "tlsd validate"; print the JSON Schema for editors with
"tlsd schema".`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("tlsd {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newValidateCmd(), newRunCmd(), newEdgeCmd(), newAgentCmd(), newPlanCmd(), newStatusCmd(), newCACmd(), newTunnelCmd(), newImportCmd(), newSchemaCmd(), newVersionCmd())
	return root
}

// completeValues makes shell completion offer values for a flag of cmd.
func completeValues(cmd *cobra.Command, flag string, values ...string) {
	cmd.RegisterFlagCompletionFunc(flag, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	})
}
