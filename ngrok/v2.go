package ngrok

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tlsd/tlsd/schema"
)

// agentSettings are ngrok agent settings that configure ngrok's own process: nothing
// for an endpoint file, each said once.
var agentSettings = map[string]string{
	"authtoken":           "agents authenticate to the edge with a client certificate instead (tlsd tunnel agent-cert NAME)",
	"api_key":             "tlsd has no cloud API: the endpoint files are the configuration",
	"region":              "the edge is your own tlsd edge; agents name it with --edge",
	"server_addr":         "agents name their edge with tlsd agent --edge",
	"connect_url":         "agents name their edge with tlsd agent --edge",
	"log":                 "tlsd logs to stderr",
	"log_level":           "use --log-level",
	"log_format":          "use --log-format",
	"web_addr":            "the admin API is --admin",
	"inspect_db_size":     "tlsd does not record traffic",
	"console_ui":          "tlsd status and the status page on --admin show what runs",
	"console_ui_color":    "tlsd status and the status page on --admin show what runs",
	"update_channel":      "tlsd is updated as a binary (SIGUSR2 hands over without a dropped connection)",
	"update_check":        "tlsd is updated as a binary (SIGUSR2 hands over without a dropped connection)",
	"root_cas":            "agents verify the edge with tlsd agent --ca",
	"heartbeat_interval":  "tunnel sessions send heartbeats every 5 s",
	"heartbeat_tolerance": "a session that misses its heartbeats is replaced",
	"metadata":            "tlsd has no metadata field",
	"proxy_url":           "agents dial the edge directly",
	"dns_resolver_ips":    "agents resolve --edge names with the system resolver",
}

// v2 converts an agent configuration of version 2: its tunnels.
func (c *converter) v2(root *yaml.Node) {
	each(root, func(k, v *yaml.Node) {
		switch k.Value {
		case "version":
		case "tunnels":
			each(v, c.tunnel)
		default:
			c.agentSetting(k)
		}
	})
}

func (c *converter) agentSetting(k *yaml.Node) {
	if why, ok := agentSettings[k.Value]; ok {
		c.warn(k, CodeUnsupported, "%s is ngrok's own setting, left out: %s", k.Value, why)
		return
	}
	c.warn(k, CodeUnknown, "%s: not an ngrok agent setting tlsd knows; left out", k.Value)
}

// tunnel converts one version 2 tunnel; only proto: tls ones are TLS endpoints.
func (c *converter) tunnel(name, t *yaml.Node) {
	proto := lookup(t, "proto")
	if proto == nil || proto.Value != "tls" {
		kind := "a"
		if proto != nil {
			kind = proto.Value
		}
		c.warn(name, CodeSkipped, "%s tunnel %q skipped: tlsd serves TLS endpoints (proto: tls)", kind, name.Value)
		return
	}
	ep := &Endpoint{Source: fmt.Sprintf("%s:%d:%d (tunnel %q)", c.file, name.Line, name.Column, name.Value)}
	ok := true
	each(t, func(k, v *yaml.Node) { ok = c.tunnelField(ep, k, v) && ok })
	if ok && c.complete(ep, name, "tunnel "+fmt.Sprintf("%q", name.Value), "addr", "hostname") {
		c.add(ep, name.Value)
	}
}

// tunnelField sets what field k says; false means the tunnel cannot be converted.
func (c *converter) tunnelField(ep *Endpoint, k, v *yaml.Node) bool {
	switch k.Value {
	case "proto":
	case "addr":
		up, err := upstreamOf(v.Value)
		if err != nil {
			c.warn(v, CodeSkipped, "tunnel skipped: %v", err)
			return false
		}
		ep.Upstream = up
	case "hostname", "domain":
		ep.Domain = strings.ToLower(v.Value)
	case "crt":
		ep.Crt = c.fileOf(v.Value)
	case "key":
		ep.Key = c.fileOf(v.Value)
	case "terminate_at":
		ep.TerminateAt = v.Value
	case "mutual_tls_cas":
		for _, p := range values(v) {
			ep.ClientCAs = append(ep.ClientCAs, c.fileOf(p))
		}
	case "proxy_proto":
		return c.setProxy(ep, v)
	case "ip_restriction":
		c.restriction(ep, v, "allow_cidrs", "deny_cidrs")
	case "subdomain":
		c.warn(k, CodeSkipped, "subdomain %q is a name on ngrok's domain; tlsd serves domains you own: give hostname", v.Value)
		return false
	case "remote_addr":
		c.warn(k, CodeUnsupported, "remote_addr (a reserved ngrok address) left out: tlsd listens where --listen or the endpoint's listen says")
	default:
		if ngrokTunnelFields[k.Value] {
			c.warn(k, CodeUnsupported, "tunnel field %s has no tlsd equivalent; left out", k.Value)
		} else {
			c.warn(k, CodeUnknown, "%s: not an ngrok tunnel field; left out", k.Value)
		}
	}
	return true
}

// ngrokTunnelFields are the other fields of ngrok's version 2 tunnels (mostly HTTP's).
var ngrokTunnelFields = map[string]bool{"inspect": true, "metadata": true, "host_header": true, "bind_tls": true,
	"auth": true, "basic_auth": true, "schemes": true, "circuit_breaker": true, "compression": true, "oauth": true,
	"oidc": true, "webhook_verification": true, "request_header": true, "response_header": true,
	"websocket_tcp_converter": true, "user_agent_filter": true, "traffic_policy": true, "labels": true,
	"pooling_enabled": true, "verify_webhook": true}

func (c *converter) setProxy(ep *Endpoint, v *yaml.Node) bool {
	pp, err := proxyVersion(v.Value)
	if err != nil {
		c.warn(v, CodeSkipped, "skipped: %v", err)
		return false
	}
	ep.ProxyProtocol = pp
	return true
}

// restriction reads allow and deny lists (the field names differ between versions).
func (c *converter) restriction(ep *Endpoint, n *yaml.Node, allow, deny string) {
	each(n, func(k, v *yaml.Node) {
		switch k.Value {
		case allow:
			ep.Allow = append(ep.Allow, values(v)...)
		case deny:
			ep.Deny = append(ep.Deny, values(v)...)
		case "enforce":
			if v.Value == "false" {
				c.warn(k, CodeApproximate, "enforce: false (ngrok only logs) has no tlsd equivalent: tlsd enforces the restriction")
			}
		default:
			c.warn(k, CodeUnsupported, "%s: not an IP restriction setting tlsd has; left out", k.Value)
		}
	})
}

// complete applies ngrok's defaults and tlsd's rules for the termination mode, and says
// whether the endpoint can be served.
func (c *converter) complete(ep *Endpoint, at *yaml.Node, what, upstreamField, domainField string) bool {
	switch {
	case ep.Domain == "":
		c.warn(at, CodeSkipped, "%s skipped: no %s. ngrok picks a random domain then; tlsd serves names you own", what, domainField)
		return false
	case ep.Upstream == "":
		c.warn(at, CodeSkipped, "%s skipped: no %s (where connections go)", what, upstreamField)
		return false
	case ep.Crt.empty() != ep.Key.empty():
		c.warn(at, CodeSkipped, "%s skipped: a certificate needs both its certificate and its key", what)
		return false
	}
	if ep.TerminateAt == "" {
		ep.TerminateAt = schema.TerminateUpstream
		if !ep.Crt.empty() {
			ep.TerminateAt = schema.TerminateEdge
		}
	}
	return c.fitMode(ep, at, what)
}

// fitMode drops what the termination mode does not allow, saying so.
func (c *converter) fitMode(ep *Endpoint, at *yaml.Node, what string) bool {
	switch ep.TerminateAt {
	case schema.TerminateUpstream:
		if !ep.Crt.empty() || len(ep.ClientCAs) > 0 || ep.MinVersion != "" || ep.MaxVersion != "" {
			c.warn(at, CodeUnsupported, "%s: terminate_at upstream passes TLS through; its certificate, mutual TLS and versions are left out", what)
			ep.Crt, ep.Key, ep.ClientCAs, ep.MinVersion, ep.MaxVersion, ep.Strategy = file{}, file{}, nil, "", "", ""
		}
	case schema.TerminateAgent:
		if ep.Crt.empty() {
			c.warn(at, CodeSkipped, "%s skipped: terminate_at agent needs the certificate and key the agent serves", what)
			return false
		}
		if ep.MinVersion != "" || ep.MaxVersion != "" {
			c.warn(at, CodeApproximate, "%s: the agent's TLS versions are fixed (1.2 and 1.3); min/max version left out", what)
			ep.MinVersion, ep.MaxVersion = "", ""
		}
	case schema.TerminateEdge:
		if ep.Crt.empty() {
			c.warn(at, CodeApproximate, "%s: ngrok's edge provisions a publicly trusted certificate; tlsd uses its internal issuer here until you declare an ACME Issuer and name it in tls.issuer", what)
		}
	default:
		c.warn(at, CodeSkipped, "%s skipped: terminate_at %q is not edge, agent or upstream", what, ep.TerminateAt)
		return false
	}
	if strings.HasPrefix(ep.Upstream, schema.UpstreamTLSPrefix) && ep.TerminateAt == schema.TerminateUpstream {
		c.warn(at, CodeApproximate, "%s: a tls:// upstream with passthrough would encrypt twice; tlsd passes the client's TLS to %s as it is", what, strings.TrimPrefix(ep.Upstream, schema.UpstreamTLSPrefix))
		ep.Upstream = strings.TrimPrefix(ep.Upstream, schema.UpstreamTLSPrefix)
	}
	return true
}
