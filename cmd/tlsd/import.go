package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/ngrok"
	"github.com/tlsd/tlsd/report"
	"github.com/tlsd/tlsd/schema"
)

func newImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Turn another tool's configuration into tlsd endpoint files",
	}
	cmd.AddCommand(newImportNgrokCmd())
	return cmd
}

func newImportNgrokCmd() *cobra.Command {
	var out, agentName string
	var force, skipFiles bool
	cmd := &cobra.Command{
		Use:   "ngrok [flags] FILE | - | -- NGROK-ARGS...",
		Short: "Turn ngrok TLS tunnels, endpoints or an ngrok tls command line into endpoint files",
		Long: `Import ngrok reads an ngrok agent configuration (version 2 tunnels with proto: tls,
version 3 endpoints with url: tls://... and their agent_tls_termination and
on_tcp_connect terminate-tls and restrict-ips actions), or, after --, an ngrok tls
command line, and writes one endpoint file per endpoint to --out, each starting with
the schema modeline and a comment naming its source. Inline PEM is written beside it
(keys mode 0600). Then it validates what it wrote as "tlsd validate" does.

What has no tlsd equivalent (HTTP tunnels, CEL expressions, forward-internal, ngrok's
own domains and addresses, agent settings) is reported as a warning at its line in the
source, never dropped in silence.

Exit status: 0 converted and valid, 1 nothing converted or the result invalid, 2 usage
or I/O error.`,
		Example: `  tlsd import ngrok ~/.config/ngrok/ngrok.yml
  tlsd import ngrok --out endpoints/ --agent billing-agent ngrok.yml
  tlsd import ngrok -- tls 443 --terminate-at agent --domain app.example.com --crt app.crt --key app.key`,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := convertNgrok(cmd, args, ngrok.Options{Agent: agentName})
			if err != nil {
				return err
			}
			return writeImport(cmd.OutOrStdout(), cmd.ErrOrStderr(), res, out, force, skipFiles)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "endpoints", "`DIR` to write the endpoint files to (created if missing)")
	f.StringVar(&agentName, "agent", "", "serve every endpoint through the agent called `NAME` (split deployment)")
	f.BoolVar(&force, "force", false, "replace files that exist in --out")
	f.BoolVar(&skipFiles, "skip-files", false, "validate without reading the certificate and key files (not on this machine)")
	return cmd
}

// convertNgrok reads what args name: a command line after --, a file, or - (stdin).
func convertNgrok(cmd *cobra.Command, args []string, o ngrok.Options) (*ngrok.Result, error) {
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		if dash > 0 {
			return nil, &exitError{exitUsage, fmt.Errorf("give either a FILE or an ngrok command line after --, not both")}
		}
		res, err := ngrok.FromArgs(args, o)
		if err != nil {
			return nil, &exitError{exitUsage, err}
		}
		return res, nil
	}
	if len(args) != 1 {
		return nil, &exitError{exitUsage, fmt.Errorf("give one ngrok configuration file (or - for standard input), or an ngrok command line after --")}
	}
	name, data, err := readSource(cmd.InOrStdin(), args[0])
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	o.BaseDir = filepath.Dir(name)
	res, err := ngrok.FromConfig(name, data, o)
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	return res, nil
}

// readSource reads a file, or standard input for "-" (named "<stdin>" in diagnostics),
// at most 16 MiB of it.
func readSource(stdin io.Reader, arg string) (string, []byte, error) {
	if arg == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
		return "<stdin>", data, err
	}
	data, err := os.ReadFile(arg)
	return arg, data, err
}

// writeImport reports the warnings, writes the files and validates them.
func writeImport(stdout, stderr io.Writer, res *ngrok.Result, out string, force, skipFiles bool) error {
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, w)
	}
	if len(res.Endpoints) == 0 {
		return &exitError{exitInvalid, fmt.Errorf("nothing could be converted: no TLS tunnel or endpoint tlsd can serve (%d warnings above)", len(res.Warnings))}
	}
	files, err := res.Write(out, force)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	v, err := schema.Load(schema.Options{SkipFiles: skipFiles}, out)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	fmt.Fprintf(stdout, "validating %s:\n", out)
	report.Write(stdout, v, report.Options{Format: report.FormatText})
	if v.Diagnostics.HasErrors() {
		return &exitError{code: exitInvalid}
	}
	return nil
}
