package ngrok

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tlsd/tlsd/schema"
)

// Options tune a conversion.
type Options struct {
	// Agent, when set, is the agent every endpoint is served through (split deployment).
	Agent string
	// BaseDir is what relative certificate paths are relative to (ngrok resolves them
	// against its working directory); "" is the working directory.
	BaseDir string
}

// FromConfig converts an ngrok agent configuration file (version 2 or 3); name is what
// warnings call it.
func FromConfig(name string, data []byte, o Options) (*Result, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: not YAML: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: an ngrok configuration is a mapping with the keys version and tunnels or endpoints", name)
	}
	c := &converter{file: name, o: o, r: &Result{}, names: map[string]bool{}}
	root := doc.Content[0]
	version := ""
	if v := lookup(root, "version"); v != nil {
		version = strings.Trim(v.Value, `"'`)
	}
	switch version {
	case "2", "1", "":
		c.v2(root)
	case "3":
		c.v3(root)
	default:
		return nil, fmt.Errorf("%s: ngrok configuration version %q; tlsd reads versions 2 and 3", name, version)
	}
	return c.r, nil
}

// converter carries what a conversion needs and collects its result.
type converter struct {
	file  string
	o     Options
	r     *Result
	names map[string]bool // endpoint names given so far
}

func (c *converter) pos(n *yaml.Node) schema.Pos {
	return schema.Pos{File: c.file, Line: n.Line, Column: n.Column}
}

func (c *converter) warn(n *yaml.Node, code, format string, args ...any) {
	c.r.warn(c.pos(n), code, format, args...)
}

// add finishes ep (its unique name, the agent) and keeps it.
func (c *converter) add(ep *Endpoint, name string) {
	ep.Name = c.uniqueName(name, ep.Domain)
	if c.o.Agent != "" {
		ep.Agent = c.o.Agent
	}
	if ep.TerminateAt == schema.TerminateEdge && ep.Crt.empty() && ep.Issuer == "" {
		ep.Issuer = schema.InternalIssuer
	}
	c.r.Endpoints = append(c.r.Endpoints, ep)
}

// uniqueName is a DNS label from name (else the domain), unique among the endpoints.
func (c *converter) uniqueName(name, domain string) string {
	base := label(name)
	if base == "" {
		base = label(strings.ReplaceAll(strings.TrimPrefix(domain, "*."), ".", "-"))
	}
	if base == "" {
		base = "endpoint"
	}
	n := base
	for i := 2; c.names[n]; i++ {
		n = fmt.Sprintf("%s-%d", strings.TrimRight(base[:min(len(base), 59)], "-"), i)
	}
	c.names[n] = true
	return n
}

// label lowers s to a DNS label: letters, digits and '-', at most 63.
func label(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	for strings.Contains(out, "--") {
		out = strings.ReplaceAll(out, "--", "-")
	}
	return strings.Trim(out[:min(len(out), 63)], "-")
}

// upstreamOf turns ngrok's addr or upstream.url into tlsd's upstream: a bare port is
// ngrok's localhost:PORT; tls:// stays (tlsd dials it over TLS).
func upstreamOf(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	scheme := ""
	if i := strings.Index(a, "://"); i >= 0 {
		scheme, a = a[:i], a[i+3:]
	}
	switch scheme {
	case "", "tcp":
	case "tls":
		scheme = "tls://"
	default:
		return "", fmt.Errorf("upstream %q: tlsd forwards to host:port or tls://host:port, not %s://", addr, scheme)
	}
	if scheme == "tcp" {
		scheme = ""
	}
	if _, err := strconv.Atoi(a); err == nil {
		return scheme + "localhost:" + a, nil
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return "", fmt.Errorf("upstream %q is not a port or host:port", addr)
	}
	return scheme + a, nil
}

// endpointURL splits ngrok's tls://DOMAIN[:PORT] into tlsd's domain and listen.
func endpointURL(u string) (domain, listen string, err error) {
	rest, ok := strings.CutPrefix(u, "tls://")
	if !ok {
		return "", "", fmt.Errorf("url %q: tlsd serves tls:// endpoints", u)
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	}
	if host == "" {
		return "", "", errors.New("no domain: ngrok picks one for you, tlsd serves names you own; give url: tls://your.domain")
	}
	if port != "" && port != "443" {
		listen = ":" + port
	}
	return strings.ToLower(host), listen, nil
}

// proxyVersion is tlsd's upstream_proxy_protocol for ngrok's 1 or 2.
func proxyVersion(v string) (string, error) {
	switch strings.Trim(v, `"' `) {
	case "1", "v1":
		return "v1", nil
	case "2", "v2":
		return "v2", nil
	case "", "0", "false":
		return "", nil
	}
	return "", fmt.Errorf("proxy protocol %q is not 1 or 2", v)
}

// fileOf is a certificate or key: inline PEM as is, a path resolved as ngrok would.
func (c *converter) fileOf(v string) file {
	if strings.Contains(v, "-----BEGIN") {
		return file{PEM: []byte(strings.TrimSpace(v) + "\n")}
	}
	if v == "" || filepath.IsAbs(v) {
		return file{Path: v}
	}
	base := c.o.BaseDir
	if abs, err := filepath.Abs(filepath.Join(base, v)); err == nil {
		return file{Path: abs, relative: true}
	}
	return file{Path: v}
}

// deref is the node an alias (*name) stands for; aliases of aliases are followed a few
// times, never expanded further, so an alias bomb costs nothing.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// lookup is the value of key in mapping n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

// each calls f for every key and value of mapping n.
func each(n *yaml.Node, f func(key, value *yaml.Node)) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		f(n.Content[i], deref(n.Content[i+1]))
	}
}

// strings of a sequence (or of a single scalar).
func values(n *yaml.Node) []string {
	n = deref(n)
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for _, v := range n.Content {
		out = append(out, deref(v).Value)
	}
	return out
}
