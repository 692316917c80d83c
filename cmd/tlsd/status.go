package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/schema"
)

func newStatusCmd() *cobra.Command {
	var (
		admins  []string
		format  string
		asJSON  bool
		ready   bool
		waitRev string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what a running tlsd serves",
		Long: `Status asks a running tlsd, through its admin API, what it serves: the generation
and when it was applied, whether the last reload worked (and if not, its
diagnostics), and every endpoint with its open connections and certificate.

With --ready it asks /readyz only and exits 0 when tlsd serves and is not shutting
down, 1 otherwise: a health check for containers (the image has no curl).

With --wait-revision REV it waits until every --admin daemon serves REV (a commit,
7 hex digits at least, a digest, or a REVISION file's line) from a successful
reload: exit 0 once all do, 1 at once (with the diagnostics) if one refused that
revision, 3 when --timeout passes first. A deploy pipeline's last step:

  tlsd status --admin edge-a:9180 --admin edge-b:9180 --wait-revision "$(git rev-parse HEAD)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if waitRev != "" {
				if err := checkRevision(waitRev); err != nil {
					return &exitError{exitUsage, err}
				}
				return revisionWait{rev: waitRev, admins: admins, timeout: timeout, poll: 200 * time.Millisecond}.run(cmd.OutOrStdout())
			}
			if len(admins) != 1 {
				return &exitError{exitUsage, fmt.Errorf("--admin: give one address, or use --wait-revision to check several")}
			}
			admin := admins[0]
			if ready {
				return checkReady(cmd.OutOrStdout(), admin)
			}
			if asJSON {
				format = "json"
			}
			if format != "text" && format != "json" {
				return &exitError{exitUsage, fmt.Errorf("--format: unknown format %q (want text or json)", format)}
			}
			var raw json.RawMessage
			if err := getJSON(admin, "/status", &raw); err != nil {
				return &exitError{exitUsage, err}
			}
			if format == "json" {
				var b bytes.Buffer
				json.Indent(&b, raw, "", "  ")
				b.WriteByte('\n')
				_, err := b.WriteTo(cmd.OutOrStdout())
				return err
			}
			var st statusView
			if err := json.Unmarshal(raw, &st); err != nil {
				return &exitError{exitUsage, fmt.Errorf("read /status from %s: %w", admin, err)}
			}
			printStatus(cmd.OutOrStdout(), st)
			if !st.LastAttempt.OK {
				return &exitError{code: exitInvalid}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&admins, "admin", []string{"127.0.0.1:9180"}, "the admin API `ADDR` of the running tlsd (repeatable with --wait-revision: every daemon of a fleet)")
	cmd.Flags().StringVar(&waitRev, "wait-revision", "", "wait until every --admin daemon serves `REV` (a commit, a digest, a REVISION line); exit 0, 1 if refused, 3 on timeout")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait-revision waits")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text, or json (the raw /status JSON)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "the same as --format json")
	cmd.Flags().MarkDeprecated("json", "use --format json, as validate and plan do")
	completeValues(cmd, "format", "text", "json")
	cmd.Flags().BoolVar(&ready, "ready", false, "only ask /readyz: exit 0 when serving, 1 when not (or shutting down)")
	return cmd
}

func checkReady(w io.Writer, admin string) error {
	resp, err := adminClient.Get("http://" + admin + "/readyz")
	if err != nil {
		return &exitError{exitInvalid, fmt.Errorf("ask tlsd at %s: %w", admin, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	fmt.Fprint(w, string(body))
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: exitInvalid}
	}
	return nil
}

var adminClient = &http.Client{Timeout: 10 * time.Second}

func getJSON(admin, path string, v any) error {
	resp, err := adminClient.Get("http://" + admin + path)
	if err != nil {
		return fmt.Errorf("ask tlsd at %s: %w (is it running with --admin %s?)", admin, err, admin)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ask tlsd at %s%s: %s", admin, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("read %s from %s: %w", path, admin, err)
	}
	return nil
}

// fetchRunningConfig is the configuration a running tlsd serves, for tlsd plan --admin.
func fetchRunningConfig(admin string) (*schema.Config, error) {
	var cfg *schema.Config
	if err := getJSON(admin, "/config", &cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// statusView is /status of an edge or tlsd run, or of an agent (which names itself and
// its sessions to the edges).
type statusView struct {
	admin.Status
	Agent string `json:"agent"`
	Edges []struct {
		Edge, Address       string
		Connected           bool
		Since               time.Time
		Reconnects, Streams int64
	} `json:"edges"`
}

func printStatus(w io.Writer, st statusView) {
	if st.Agent != "" {
		fmt.Fprintf(w, "agent %s\n", st.Agent)
	}
	fmt.Fprintf(w, "generation %d, applied %s\n", st.Generation, st.AppliedAt.Local().Format(time.RFC3339))
	if c := st.Config; c != nil {
		fmt.Fprintf(w, "configuration %s, digest %s\n", revisionText(c.Revision, c.Dirty), c.Digest)
	}
	a := st.LastAttempt
	if a.OK {
		fmt.Fprintf(w, "last reload: ok at %s\n", a.At.Local().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "last reload: FAILED at %s: %s (still serving generation %d)\n", a.At.Local().Format(time.RFC3339), a.Error, st.Generation)
		for _, d := range a.Diagnostics {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tDOMAIN\tLISTEN\tTERMINATE AT\tCONNECTIONS\tCERTIFICATE")
	for _, e := range st.Endpoints {
		cert := "-"
		switch {
		case e.Certificate != nil:
			cert = certificateText(e.Certificate)
		case e.TerminateAt == "upstream":
			cert = "held by the upstream"
		case e.Agent != "":
			cert = "held by agent " + e.Agent + " (its status shows it)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.Name, e.Domain, e.Listen, e.TerminateAt, e.ActiveConnections, cert)
	}
	tw.Flush()
	printAgents(w, st.Status)
	printSessions(w, st)
}

// printSessions lists an agent's sessions to its edges.
func printSessions(w io.Writer, st statusView) {
	if len(st.Edges) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EDGE\tADDRESS\tCONNECTED\tRECONNECTS\tSTREAMS")
	for _, e := range st.Edges {
		since := "DOWN"
		if e.Connected {
			since = e.Since.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", e.Edge, e.Address, since, e.Reconnects, e.Streams)
	}
	tw.Flush()
}

// printAgents lists, on an edge, the agents with live tunnel sessions and the endpoints
// whose agent has none.
func printAgents(w io.Writer, st admin.Status) {
	var dead []string
	for _, e := range st.Endpoints {
		if e.AgentLive != nil && !*e.AgentLive {
			dead = append(dead, fmt.Sprintf("%s (agent %s)", e.Name, e.Agent))
		}
	}
	if len(st.Agents) == 0 && len(dead) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tFROM\tCONNECTED\tSTREAMS\tHEALTHY")
	for _, a := range st.Agents {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\n", a.Name, a.Address, a.Since.Local().Format(time.RFC3339), a.Streams, a.Healthy)
	}
	tw.Flush()
	if len(dead) > 0 {
		fmt.Fprintf(w, "NO LIVE AGENT for: %s\n", strings.Join(dead, ", "))
	}
}

// certificateText is one line on a certificate: whose, until when, how it was validated,
// and for ACME what is wrong when something is.
func certificateText(c *admin.CertificateStatus) string {
	var parts []string
	if !c.NotAfter.IsZero() {
		parts = append(parts, fmt.Sprintf("%s, expires %s (%s)", c.Issuer, c.NotAfter.Local().Format(time.DateOnly), untilDays(c.NotAfter)))
	}
	if c.Challenge != "" {
		parts = append(parts, "by "+c.Challenge)
	}
	if c.HeldBy != "" {
		parts = append(parts, "at agent "+c.HeldBy)
	}
	switch c.State {
	case autocertPending:
		parts = append(parts, "pending: being ordered")
	case autocertFailed:
		parts = append(parts, fmt.Sprintf("FAILED, next try %s: %s", c.NextRetry.Local().Format(time.TimeOnly), shorten(c.Error, 160)))
	}
	return strings.Join(parts, ", ")
}

// The ACME states /status reports that need saying in the table.
const (
	autocertPending = "pending"
	autocertFailed  = "failed"
)

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func untilDays(t time.Time) string {
	d := time.Until(t)
	if d < 0 {
		return "EXPIRED"
	}
	return fmt.Sprintf("in %d days", int(d.Hours()/24))
}

// revisionText is a revision as the status says it.
func revisionText(rev string, dirty bool) string {
	switch {
	case rev == "":
		return "of no known revision"
	case dirty:
		return "at revision " + rev + " with local changes"
	}
	return "at revision " + rev
}
