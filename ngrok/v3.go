package ngrok

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tlsd/tlsd/schema"
)

// v3 converts an agent configuration of version 3: its endpoints (and tunnels, which
// version 3 still reads).
func (c *converter) v3(root *yaml.Node) {
	each(root, func(k, v *yaml.Node) {
		switch k.Value {
		case "version":
		case "agent":
			each(v, func(k, _ *yaml.Node) { c.agentSetting(k) })
		case "endpoints":
			for _, e := range v.Content {
				c.endpoint(deref(e))
			}
		case "tunnels":
			each(v, c.tunnel)
		default:
			c.warn(k, CodeUnknown, "%s: not a version 3 section tlsd knows; left out", k.Value)
		}
	})
}

// endpoint converts one version 3 endpoint: url tls://DOMAIN, an upstream, and
// termination at the agent or, by a terminate-tls action, at the edge.
func (c *converter) endpoint(n *yaml.Node) {
	name := lookup(n, "name")
	what := fmt.Sprintf("endpoint at %d:%d", n.Line, n.Column)
	label := ""
	if name != nil {
		what, label = fmt.Sprintf("endpoint %q", name.Value), name.Value
	}
	url := lookup(n, "url")
	if url == nil || !strings.HasPrefix(url.Value, "tls://") {
		scheme := "an"
		if url != nil {
			scheme, _, _ = strings.Cut(url.Value, "://")
		}
		c.warn(n, CodeSkipped, "%s %s skipped: tlsd serves TLS endpoints (url: tls://...)", scheme, what)
		return
	}
	ep := &Endpoint{Source: fmt.Sprintf("%s:%d:%d (%s)", c.file, n.Line, n.Column, what)}
	ok := true
	each(n, func(k, v *yaml.Node) { ok = c.endpointField(ep, k, v) && ok })
	if ok && c.complete(ep, n, what, "upstream.url", "domain in url") {
		c.add(ep, label)
	}
}

func (c *converter) endpointField(ep *Endpoint, k, v *yaml.Node) bool {
	switch k.Value {
	case "name", "description", "metadata":
	case "url":
		domain, listen, err := endpointURL(v.Value)
		if err != nil {
			c.warn(v, CodeSkipped, "skipped: %v", err)
			return false
		}
		ep.Domain, ep.Listen = domain, listen
	case "upstream":
		return c.upstream(ep, v)
	case "agent_tls_termination":
		ep.TerminateAt = schema.TerminateAgent
		c.serverTLS(ep, v)
	case "traffic_policy":
		return c.trafficPolicy(ep, v)
	case "bindings":
		if vs := values(v); len(vs) > 0 && vs[0] != "public" {
			c.warn(v, CodeSkipped, "skipped: binding %q is reachable inside ngrok only; tlsd endpoints are public on their listener", vs[0])
			return false
		}
	default:
		c.warn(k, CodeUnsupported, "endpoint field %s has no tlsd equivalent; left out", k.Value)
	}
	return true
}

func (c *converter) upstream(ep *Endpoint, n *yaml.Node) bool {
	ok := true
	each(n, func(k, v *yaml.Node) {
		switch k.Value {
		case "url":
			up, err := upstreamOf(v.Value)
			if err != nil {
				c.warn(v, CodeSkipped, "skipped: %v", err)
				ok = false
			}
			ep.Upstream = up
		case "proxy_protocol":
			ok = c.setProxy(ep, v) && ok
		default:
			c.warn(k, CodeUnsupported, "upstream.%s has no tlsd equivalent; left out", k.Value)
		}
	})
	return ok
}

// serverTLS reads the certificate settings agent_tls_termination and terminate-tls share.
func (c *converter) serverTLS(ep *Endpoint, n *yaml.Node) {
	each(n, func(k, v *yaml.Node) {
		switch k.Value {
		case "server_certificate":
			ep.Crt = c.fileOf(v.Value)
		case "server_private_key":
			ep.Key = c.fileOf(v.Value)
		case "mutual_tls_certificate_authorities":
			for _, p := range values(v) {
				ep.ClientCAs = append(ep.ClientCAs, c.fileOf(p))
			}
		case "mutual_tls_verification_strategy":
			ep.Strategy = v.Value
		case "min_version":
			ep.MinVersion = v.Value
		case "max_version":
			ep.MaxVersion = v.Value
		default:
			c.warn(k, CodeUnsupported, "%s has no tlsd equivalent; left out", k.Value)
		}
	})
}

// trafficPolicy converts the on_tcp_connect actions tlsd has: terminate-tls and
// restrict-ips. Expressions (CEL) are not evaluated: a rule's actions apply to every
// connection, which for restrict-ips is the stricter reading.
func (c *converter) trafficPolicy(ep *Endpoint, n *yaml.Node) bool {
	ok := true
	each(n, func(k, v *yaml.Node) {
		if k.Value != "on_tcp_connect" {
			c.warn(k, CodeUnsupported, "traffic_policy.%s has no tlsd equivalent (tlsd acts at TCP connect and TLS only); left out", k.Value)
			return
		}
		for _, rule := range v.Content {
			ok = c.rule(ep, deref(rule)) && ok
		}
	})
	return ok
}

func (c *converter) rule(ep *Endpoint, rule *yaml.Node) bool {
	if ex := lookup(rule, "expressions"); ex != nil && len(ex.Content) > 0 {
		c.warn(ex, CodeApproximate, "expressions (CEL) are not evaluated by tlsd: this rule's actions apply to every connection")
	}
	ok := true
	for _, a := range lookupSeq(rule, "actions") {
		typ, cfg := lookup(a, "type"), lookup(a, "config")
		switch {
		case typ == nil:
			c.warn(a, CodeUnknown, "an action without a type; left out")
		case typ.Value == "terminate-tls":
			if ep.TerminateAt == schema.TerminateAgent {
				c.warn(typ, CodeApproximate, "terminate-tls at the edge and agent_tls_termination both given: tlsd terminates once, at the agent")
				continue
			}
			ep.TerminateAt = schema.TerminateEdge
			c.serverTLS(ep, cfg)
		case typ.Value == "restrict-ips":
			c.restriction(ep, cfg, "allow", "deny")
		case typ.Value == "forward-internal":
			c.warn(typ, CodeSkipped, "skipped: forward-internal sends to an ngrok internal endpoint; in tlsd, name the service as upstream")
			ok = false
		default:
			c.warn(typ, CodeUnsupported, "action %s has no tlsd equivalent; left out", typ.Value)
		}
	}
	return ok
}

func lookupSeq(n *yaml.Node, key string) []*yaml.Node {
	if v := lookup(n, key); v != nil && v.Kind == yaml.SequenceNode {
		out := make([]*yaml.Node, len(v.Content))
		for i, a := range v.Content {
			out[i] = deref(a)
		}
		return out
	}
	return nil
}
