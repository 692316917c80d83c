package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tlsd/tlsd/report"
	"github.com/tlsd/tlsd/schema"
)

func newValidateCmd() *cobra.Command {
	var (
		format     string
		color      string
		skipFiles  bool
		role       string
		agentName  string
		httpListen string
		exclude    []string
	)
	cmd := &cobra.Command{
		Use:   "validate [flags] PATH... | -",
		Short: "Check endpoint configuration files, as CI and pre-commit hooks do",
		Long: `Validate reads every *.yaml and *.yml file under each PATH (recursively, skipping
names that start with "."), or the files given, and checks them: the JSON Schema,
the rules between fields and documents, and the certificate, key and CA files they
reference. Each problem is reported at the exact line and column that is wrong.

"-" reads one file's documents from standard input (relative paths in them are
relative to the working directory), for editors and scripts.

Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.`,
		Example: `  tlsd validate endpoints/
  tlsd validate --role edge endpoints/                    # on the edge: agents' keys may be absent
  tlsd validate --format github --skip-files endpoints/     # in CI, without secrets
  tlsd validate --format json endpoints/ | jq .summary
  tlsd validate --exclude docker-compose.yml --exclude 'ci/*' .   # a tree with other YAML
  git show HEAD:endpoints/billing.yaml | tlsd validate --skip-files -`,
		Args: pathArgs("check", "tlsd validate endpoints/"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(report.Formats, format) {
				return &exitError{exitUsage, fmt.Errorf("--format: unknown format %q (want %s)", format, strings.Join(report.Formats, ", "))}
			}
			useColor, err := wantColor(color, cmd.OutOrStdout())
			if err != nil {
				return &exitError{exitUsage, err}
			}
			if role != schema.RoleAll && role != schema.RoleEdge && role != schema.RoleAgent {
				return &exitError{exitUsage, fmt.Errorf("--role: %q is not edge, agent or all", role)}
			}
			if agentName != "" && role != schema.RoleAgent {
				return &exitError{exitUsage, fmt.Errorf("--agent %s needs --role agent: it picks one agent's endpoints among those an agent reads", agentName)}
			}
			if err := checkExcludes(exclude); err != nil {
				return err
			}
			if err := checkHTTPListen(httpListen); err != nil {
				return err
			}
			res, err := loadArgs(cmd.InOrStdin(), schema.Options{SkipFiles: skipFiles, Role: role, Agent: agentName, Exclude: exclude,
				HTTPListen: httpListen != ""}, args)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			if err := report.Write(cmd.OutOrStdout(), res, report.Options{Format: format, Color: useColor}); err != nil {
				return &exitError{exitUsage, err}
			}
			if res.Diagnostics.HasErrors() {
				return &exitError{code: exitInvalid}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", report.FormatText, "output format: text, json or github (workflow annotations)")
	f.StringVar(&color, "color", "auto", "colour text output: auto (on a terminal, unless NO_COLOR is set), always or never")
	f.BoolVar(&skipFiles, "skip-files", false, "check everything but the referenced certificate, key and CA files (for CI without secrets)")
	f.StringVar(&role, "role", schema.RoleAll, "check only the files this side of a split deployment reads: edge, agent or all")
	f.StringVar(&agentName, "agent", "", "with --role agent: only the endpoints of this agent")
	f.StringVar(&httpListen, "http-listen", "", "the --http-listen `ADDR` the daemons run with: issuers offering http-01 then draw no warning")
	addExcludeFlag(f, &exclude)
	completeValues(cmd, "format", report.Formats...)
	completeValues(cmd, "color", "auto", "always", "never")
	completeValues(cmd, "role", schema.RoleAll, schema.RoleEdge, schema.RoleAgent)
	return cmd
}

// addExcludeFlag registers --exclude, which every command that reads a configuration
// tree takes, so that validate, plan and run read the same files.
// pathArgs requires at least one PATH, saying what to give when there is none.
func pathArgs(what, example string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return &exitError{exitUsage, fmt.Errorf("give the configuration to %s: directories or files, e.g. %s (see %s --help)", what, example, cmd.CommandPath())}
		}
		return nil
	}
}

// loadArgs loads the paths given, or standard input for "-".
func loadArgs(stdin io.Reader, opts schema.Options, args []string) (*schema.Result, error) {
	if !slices.Contains(args, "-") {
		return schema.Load(opts, args...)
	}
	if len(args) > 1 {
		return nil, errors.New(`"-" (standard input) cannot be combined with other paths`)
	}
	name, data, err := readSource(stdin, "-")
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return schema.LoadData(opts, name, data)
}

func addExcludeFlag(f *pflag.FlagSet, exclude *[]string) {
	f.StringArrayVar(exclude, "exclude", nil, "leave out files and directories matching `GLOB` (repeatable): with a slash matched against the path below PATH, without against the name alone")
}

func checkExcludes(patterns []string) error {
	for _, p := range patterns {
		if err := schema.ValidExclude(p); err != nil {
			return &exitError{exitUsage, fmt.Errorf("--exclude: %w", err)}
		}
	}
	return nil
}

// wantColor decides on ANSI colours: only for a terminal, and never when NO_COLOR is set.
func wantColor(mode string, out any) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		f, ok := out.(*os.File)
		if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
			return false, nil
		}
		fi, err := f.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0, nil
	}
	return false, fmt.Errorf("--color: unknown value %q (want auto, always or never)", mode)
}
