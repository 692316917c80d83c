package main

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/localca"
	"github.com/tlsd/tlsd/schema"
)

// The tunnel's PKI in three commands: a CA kept in the state directory, the edge's
// server certificate, and a client certificate per agent.

const tunnelRotation = `Renew before it expires by running the same command again: tlsd edge and tlsd agent
read new files on SIGHUP or when they change, and open sessions carry on. Watch
tlsd_tunnel_certificate_expiry_timestamp_seconds (deploy/prometheus/tlsd-rules.yml).`

func newTunnelCmd() *cobra.Command {
	var stateDir, out string
	var days int
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Make the certificates of a split deployment's tunnel",
		Long: `Tunnel makes the certificates edge and agents authenticate each other with: a CA
kept in --state-dir (tunnel/ca/root.crt, its key 0600), a server certificate for the
edge and a client certificate for each agent, ECDSA P-256, signed by that CA. The CA's
certificate is both the edge's --agent-ca and every agent's --ca.

` + tunnelRotation,
		Example: `  tlsd tunnel ca > tunnel-ca.pem                     # on the machine that keeps the CA
  tlsd tunnel edge-cert edge.example.com 203.0.113.7  # edge.crt, edge.key
  tlsd tunnel agent-cert billing-agent                # billing-agent.crt, billing-agent.key`,
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&stateDir, "state-dir", defaultStateDir(), "directory holding the tunnel CA (in tunnel/ca/)")
	fl.StringVar(&out, "out", ".", "`DIR` to write certificates and keys to")
	fl.IntVar(&days, "days", 365, "lifetime of the certificates issued, in days")
	open := func() (*localca.CA, error) {
		return localca.OpenNamed(filepath.Join(stateDir, "tunnel"), "tlsd tunnel CA", nil)
	}
	issue := func(w io.Writer, base string, l localca.Leaf) error {
		if days < 1 {
			return &exitError{exitUsage, fmt.Errorf("--days: %d is not a lifetime; give 1 or more", days)}
		}
		ca, err := open()
		if err != nil {
			return &exitError{exitUsage, err}
		}
		l.Lifetime = time.Duration(days) * 24 * time.Hour
		return writeLeaf(w, ca, filepath.Join(out, base), l)
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "ca",
		Short: "Create the tunnel CA (once) and print its certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := open()
			if err != nil {
				return &exitError{exitUsage, err}
			}
			_, err = cmd.OutOrStdout().Write(ca.RootPEM())
			return err
		},
	}, &cobra.Command{
		Use:   "edge-cert HOST...",
		Short: "Issue the edge's tunnel certificate for the names and addresses agents dial",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, hosts []string) error {
			l, err := serverLeaf(hosts)
			if err != nil {
				return err
			}
			return issue(cmd.OutOrStdout(), "edge", l)
		},
	}, &cobra.Command{
		Use:   "agent-cert NAME",
		Short: "Issue an agent's client certificate; NAME is what endpoints' agent field names",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if p := schema.NameProblem(name); p != "" {
				return &exitError{exitUsage, fmt.Errorf("agent name %q: %s (it is what endpoints' agent field names)", name, p)}
			}
			return issue(cmd.OutOrStdout(), name, localca.Leaf{CommonName: name, DNSNames: []string{name}, Client: true})
		},
	})
	return cmd
}

// serverLeaf is the edge's certificate: every host as a DNS name or an IP address.
func serverLeaf(hosts []string) (localca.Leaf, error) {
	l := localca.Leaf{CommonName: hosts[0]}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			l.IPs = append(l.IPs, ip)
			continue
		}
		if strings.ContainsAny(h, " /:") || h == "" {
			return l, &exitError{exitUsage, fmt.Errorf("%q is not a host name or an IP address", h)}
		}
		l.DNSNames = append(l.DNSNames, strings.ToLower(h))
	}
	return l, nil
}

func writeLeaf(w io.Writer, ca *localca.CA, base string, l localca.Leaf) error {
	c, err := ca.Issue(l)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	crt, key := base+".crt", base+".key"
	if err := localca.WriteFiles(c, crt, key); err != nil {
		return &exitError{exitUsage, err}
	}
	names := append(append([]string{}, l.DNSNames...), ipStrings(l.IPs)...)
	fmt.Fprintf(w, "wrote %s and %s (mode 0600): %s, valid until %s, signed by %s\n%s\n", crt, key,
		strings.Join(names, ", "), c.Leaf.NotAfter.Format(time.DateOnly), ca.Root().Subject.CommonName, tunnelRotation)
	return nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
