package daemon

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/tlsd/tlsd/autocert"
	"github.com/tlsd/tlsd/schema"
)

// accounts keeps one ACME account manager per Issuer document across generations, for
// the daemon (edge certificates) and the agent (agent certificates, by DNS-01). Its
// owner's lock guards it.
type accounts struct {
	running map[string]*autocert.Manager // by issuer name
	options autocert.Options
}

// prepare gives every Issuer that an endpoint terminated here uses (here says) its
// manager: the running one when its settings did not change, a new one (also in fresh,
// for the caller to stop if the generation is not applied) otherwise. want is the
// issuer's settings as this process runs them. Issuers used only elsewhere get none, so
// an edge needs no secrets of its agents' issuers.
func (a *accounts) prepare(cfg *schema.Config, here func(*schema.Endpoint) bool, want func(*schema.Issuer) (autocert.IssuerConfig, error)) (all, fresh map[string]*autocert.Manager, err error) {
	all, fresh = map[string]*autocert.Manager{}, map[string]*autocert.Manager{}
	defer func() {
		if err != nil {
			stopAll(fresh)
		}
	}()
	used := map[string]bool{}
	for _, ep := range cfg.Endpoints {
		if ep.TLS.Issuer != "" && here(ep) {
			used[ep.TLS.Issuer] = true
		}
	}
	for _, is := range cfg.Issuers {
		if !used[is.Name] {
			continue
		}
		ic, err := want(is)
		if err != nil {
			return nil, nil, fmt.Errorf("issuer %s: %w", is.Name, err)
		}
		if m := a.running[is.Name]; m != nil && reflect.DeepEqual(m.Config(), ic) {
			all[is.Name] = m
			continue
		}
		m, err := autocert.New(ic, a.options)
		if err != nil {
			return nil, nil, err
		}
		all[is.Name], fresh[is.Name] = m, m
	}
	return all, fresh, nil
}

// commit makes next the running managers: each keeps certificates for exactly the
// domains of its issuer in domains, and managers no longer used stop.
func (a *accounts) commit(next map[string]*autocert.Manager, domains map[string]map[string]bool) {
	for name, m := range a.running {
		if next[name] != m {
			m.Stop()
		}
	}
	a.running = next
	for name, m := range a.running {
		m.Retain(domains[name])
	}
}

func (a *accounts) stop() {
	stopAll(a.running)
	a.running = nil
}

func stopAll(ms map[string]*autocert.Manager) {
	for _, m := range ms {
		m.Stop()
	}
}

// acmeDomains are the domains each issuer keeps certificates for: those of the routes
// that terminate here with an ACME issuer.
func acmeDomains(routes map[string]*builtRoute) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, br := range routes {
		is := br.ep.TLS.Issuer
		if is == "" || is == schema.InternalIssuer || br.cert.state == nil {
			continue
		}
		if out[is] == nil {
			out[is] = map[string]bool{}
		}
		out[is][br.ep.Domain] = true
	}
	return out
}

// issuerSettings turns an Issuer document into the manager's settings, reading its
// secrets now so a broken one fails the generation, not the first order.
func issuerSettings(is *schema.Issuer, listen, httpAddr string, challenges []string) (autocert.IssuerConfig, error) {
	a := is.ACME
	ic := autocert.IssuerConfig{Name: is.Name, Directory: a.Directory, Email: a.Email, CARoots: a.CARoots,
		ListenAddr: listen, HTTPAddr: httpAddr, Challenges: challenges}
	if e := a.ExternalAccount; e != nil {
		key, err := schema.ReadSecret(e.MACKeyFile)
		if err != nil {
			return ic, fmt.Errorf("external_account.mac_key_file: %w", err)
		}
		ic.EAB = &acme.EAB{KeyID: e.KeyID, MACKey: b64url(key)}
	}
	if a.DNS != nil {
		ic.DNS = autocert.DNSConfig{Exec: a.DNS.Exec, PropagationTimeout: schema.Duration(a.PropagationTimeout)}
		if r := a.DNS.RFC2136; r != nil {
			secret, err := schema.ReadSecret(r.TSIGSecretFile)
			if err != nil {
				return ic, fmt.Errorf("dns.rfc2136.tsig_secret_file: %w", err)
			}
			ic.DNS.RFC2136 = &autocert.RFC2136{Server: r.Server, KeyName: r.TSIGKeyName, Algorithm: r.TSIGAlgorithm, Secret: secret}
		}
	}
	return ic, nil
}

// daemonIssuer is an issuer as tlsd run|edge runs it: every challenge it offers, TLS-ALPN-01
// on the listener of its first endpoint, HTTP-01 on --http-listen (which it then needs).
func (d *Daemon) daemonIssuer(cfg *schema.Config) func(*schema.Issuer) (autocert.IssuerConfig, error) {
	return func(is *schema.Issuer) (autocert.IssuerConfig, error) {
		if is.ACME.Offers(schema.ChallengeHTTP) && d.opts.HTTPListen == "" {
			return autocert.IssuerConfig{}, fmt.Errorf("it offers http-01, which tlsd answers only on an HTTP listener: give --http-listen (e.g. :80), or remove http-01 from its challenges")
		}
		return issuerSettings(is, d.issuerListen(cfg, is.Name), d.opts.HTTPListen, is.ACME.Challenges)
	}
}

// agentIssuer is an issuer as the agent runs it: DNS-01 alone, the one challenge an agent
// behind NAT can answer.
func agentIssuer(is *schema.Issuer) (autocert.IssuerConfig, error) {
	if !is.ACME.Offers(schema.ChallengeDNS) {
		return autocert.IssuerConfig{}, fmt.Errorf("it does not offer dns-01, the only challenge an agent answers")
	}
	return issuerSettings(is, "", "", []string{schema.ChallengeDNS})
}

func acmeOptions(o Options, onOrder func(issuer, challenge string, ok bool)) autocert.Options {
	ao := autocert.Options{StateDir: o.StateDir, RetryBase: o.ACMERetryBase, Logger: o.Logger, OnOrder: onOrder}
	if st := o.StateStore; st != nil {
		ao.Storage, ao.Poll = st, o.StorePoll
		if ao.Poll <= 0 {
			ao.Poll = 30 * time.Second
		}
	}
	return ao
}

// issuerListen is the listener of the first endpoint using the issuer: where TLS-ALPN-01
// challenges arrive.
func (d *Daemon) issuerListen(cfg *schema.Config, issuer string) string {
	for _, ep := range cfg.Endpoints {
		if ep.TLS.Issuer == issuer {
			return d.listenAddr(ep.Listen)
		}
	}
	return d.opts.Listen
}

// sameIssuers: an ACME endpoint whose issuer got a new account is rebuilt even if
// unchanged.
func sameIssuers(running, next map[string]*autocert.Manager) func(*schema.Endpoint) bool {
	return func(ep *schema.Endpoint) bool {
		m := next[ep.TLS.Issuer]
		return ep.TLS.Issuer == "" || m == nil || m == running[ep.TLS.Issuer]
	}
}

func b64url(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }
