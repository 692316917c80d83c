package ngrok

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CommandLine names the command line in warnings; a warning's column is the word's
// position in it.
const CommandLine = "command line"

// cliFlags are the `ngrok tls` flags tlsd converts, and whether each takes a value.
var cliFlags = map[string]bool{
	"domain": true, "hostname": true, "url": true, "terminate-at": true, "crt": true, "key": true,
	"mutual-tls-cas": true, "proxy-proto": true, "cidr-allow": true, "cidr-deny": true,
}

// ignoredFlags are ngrok's own flags: fine to have given, nothing to convert.
var ignoredFlags = map[string]bool{"authtoken": true, "region": true, "log": true, "log-level": true,
	"log-format": true, "config": true, "metadata": true, "description": true}

// FromArgs converts an `ngrok tls ADDR [flags]` command line (with or without the
// leading "ngrok"), the forms of ngrok's TLS termination documentation.
func FromArgs(args []string, o Options) (*Result, error) {
	if len(args) > 0 && args[0] == "ngrok" {
		args = args[1:]
	}
	if len(args) == 0 || args[0] != "tls" {
		got := "nothing"
		if len(args) > 0 {
			got = fmt.Sprintf("%q", args[0])
		}
		return nil, fmt.Errorf("tlsd converts `ngrok tls ADDR [flags]` command lines, got %s: tlsd serves TLS endpoints", got)
	}
	c := &converter{file: CommandLine, o: o, r: &Result{}, names: map[string]bool{}}
	ep := &Endpoint{Source: "the ngrok command line `ngrok " + strings.Join(args, " ") + "`"}
	words, err := c.parseArgs(args[1:], ep)
	if err != nil {
		return nil, err
	}
	if len(words) != 1 {
		return nil, fmt.Errorf("`ngrok tls` takes one address (a port or host:port), got %d: %q", len(words), words)
	}
	up, err := upstreamOf(words[0])
	if err != nil {
		return nil, err
	}
	ep.Upstream = up
	at := &yaml.Node{Line: 1, Column: 1}
	if c.complete(ep, at, "the command line", "address", "--domain") {
		c.add(ep, "")
	}
	return c.r, nil
}

// parseArgs sets what the flags say and returns the other words.
func (c *converter) parseArgs(args []string, ep *Endpoint) ([]string, error) {
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			words = append(words, a)
			continue
		}
		at := &yaml.Node{Line: 1, Column: i + 3} // words after "ngrok tls"
		takes, known := cliFlags[name]
		if ignoredFlags[name] {
			takes, known = true, false
		}
		if takes && !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("--%s needs a value", name)
			}
			i++
			value = args[i]
		}
		switch {
		case ignoredFlags[name]:
			c.warn(at, CodeUnsupported, "--%s is ngrok's own setting, left out", name)
		case !known:
			c.warn(at, CodeUnknown, "--%s: not an ngrok tls flag tlsd converts; left out", name)
		default:
			if err := c.setFlag(ep, at, name, value); err != nil {
				return nil, err
			}
		}
	}
	return words, nil
}

func (c *converter) setFlag(ep *Endpoint, at *yaml.Node, name, value string) error {
	switch name {
	case "domain", "hostname":
		ep.Domain = strings.ToLower(value)
	case "url":
		domain, listen, err := endpointURL(value)
		if err != nil {
			return fmt.Errorf("--url: %w", err)
		}
		ep.Domain, ep.Listen = domain, listen
	case "terminate-at":
		ep.TerminateAt = value
	case "crt":
		ep.Crt = c.fileOf(value)
	case "key":
		ep.Key = c.fileOf(value)
	case "mutual-tls-cas":
		ep.ClientCAs = append(ep.ClientCAs, c.fileOf(value))
	case "proxy-proto":
		pp, err := proxyVersion(value)
		if err != nil {
			return fmt.Errorf("--proxy-proto: %w", err)
		}
		ep.ProxyProtocol = pp
	case "cidr-allow":
		ep.Allow = append(ep.Allow, strings.Split(value, ",")...)
	case "cidr-deny":
		ep.Deny = append(ep.Deny, strings.Split(value, ",")...)
	}
	return nil
}
