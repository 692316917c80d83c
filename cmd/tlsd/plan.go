package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/reconcile"
	"github.com/tlsd/tlsd/report"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/watch"
)

const exitChanges = 3 // tlsd plan: the configurations differ

func newPlanCmd() *cobra.Command {
	var (
		format    string
		skipFiles bool
		admin     string
		exclude   []string
	)
	cmd := &cobra.Command{
		Use:   "plan [flags] OLD NEW | plan --admin ADDR PATH...",
		Short: "Show what applying a configuration would change",
		Long: `Plan compares two configurations and prints what applying the second over the first
would do: endpoints added, removed or changed (and which fields, including certificate
content), listeners opened or closed, and what happens to open connections.

With two paths it works offline, e.g. in CI against the main branch's checkout. With
--admin it compares PATH... (the paths tlsd run was given) against what a running tlsd
serves, and says how many open connections each change or removal would send draining.

Plans compare meaning, not spelling: file paths count relative to the directory they
were loaded from, whatever the working directory, and certificates by content, so a
copy of a directory plans as no change and a certificate rotated under the same name as
a content change.

Exit status: 0 no changes, 3 changes, 1 a configuration is invalid, 2 usage or I/O error.`,
		Example: `  tlsd plan main-checkout/endpoints/ endpoints/
  tlsd plan --admin 127.0.0.1:9180 /etc/tlsd/endpoints
  tlsd plan --format json --skip-files old/ new/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return &exitError{exitUsage, fmt.Errorf("--format: unknown format %q (want text or json)", format)}
			}
			if err := checkExcludes(exclude); err != nil {
				return err
			}
			load := schema.Options{SkipFiles: skipFiles, Exclude: exclude}
			var running *schema.Config
			var desiredPaths []string
			switch {
			case admin != "" && len(args) >= 1:
				cfg, err := fetchRunningConfig(admin)
				if err != nil {
					return &exitError{exitUsage, err}
				}
				running, desiredPaths = cfg, args
			case admin == "" && len(args) == 2:
				cfg, err := loadForPlan(cmd, load, args[0])
				if err != nil {
					return err
				}
				running, desiredPaths = cfg, args[1:]
			default:
				return &exitError{exitUsage, fmt.Errorf("give OLD and NEW paths, or --admin ADDR and the PATHs tlsd serves")}
			}
			desired, err := loadForPlan(cmd, load, desiredPaths...)
			if err != nil {
				return err
			}
			p := reconcile.Diff(running, desired)
			if admin != "" {
				st, err := runningStatus(admin)
				if err != nil {
					return &exitError{exitUsage, err}
				}
				p = p.WithOpenConnections(openConnections(st))
				if format == "text" {
					fmt.Fprintf(cmd.OutOrStdout(), "Running at %s: %s; these files are %s.\n", admin, servedText(st.Config), filesRevision(desiredPaths))
				}
			}
			if err := writePlan(cmd.OutOrStdout(), p, format); err != nil {
				return &exitError{exitUsage, err}
			}
			if p.Changed() {
				return &exitError{code: exitChanges}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	completeValues(cmd, "format", "text", "json")
	cmd.Flags().BoolVar(&skipFiles, "skip-files", false, "do not read certificate, key and CA files (content changes are then not seen)")
	cmd.Flags().StringVar(&admin, "admin", "", "compare against the configuration a running tlsd serves, via its admin address")
	addExcludeFlag(cmd.Flags(), &exclude)
	return cmd
}

// loadForPlan loads one side; an invalid configuration prints its diagnostics and ends
// with exit status 1.
func loadForPlan(cmd *cobra.Command, load schema.Options, paths ...string) (*schema.Config, error) {
	res, err := schema.Load(load, paths...)
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	if res.Config == nil {
		report.Write(cmd.ErrOrStderr(), res, report.Options{Format: report.FormatText})
		return nil, &exitError{exitInvalid, fmt.Errorf("%s is not a valid configuration", strings.Join(paths, " "))}
	}
	return res.Config, nil
}

// runningStatus is /status of the tlsd at addr.
func runningStatus(addr string) (admin.Status, error) {
	var st admin.Status
	err := getJSON(addr, "/status", &st)
	return st, err
}

// openConnections is how many connections each endpoint of st has open.
func openConnections(st admin.Status) map[string]int {
	open := map[string]int{}
	for _, e := range st.Endpoints {
		open[e.Name] = e.ActiveConnections
	}
	return open
}

// filesRevision names the revision the paths are at, as the daemon would read it.
func filesRevision(paths []string) string {
	return revisionText(watch.Overall(watch.Revisions(paths)))
}

func writePlan(w io.Writer, p reconcile.Plan, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	_, err := io.WriteString(w, p.String())
	return err
}
