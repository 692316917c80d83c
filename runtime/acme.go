package runtime

import (
	"slices"
	"time"

	"github.com/tlsd/tlsd/autocert"
	"github.com/tlsd/tlsd/schema"
)

// acmeManagersLocked gives every Issuer of cfg its account manager: the running one
// when its settings did not change, a new one (also returned in fresh, for the caller to
// stop if the generation is not applied) otherwise.
func (d *Daemon) acmeManagersLocked(cfg *schema.Config) (all, fresh map[string]*autocert.Manager, err error) {
	all, fresh = map[string]*autocert.Manager{}, map[string]*autocert.Manager{}
	for _, is := range cfg.Issuers {
		want := autocert.IssuerConfig{Name: is.Name, Directory: is.ACME.Directory, Email: is.ACME.Email,
			CARoots: is.ACME.CARoots, ListenAddr: d.issuerListen(cfg, is.Name)}
		if m := d.acme[is.Name]; m != nil && sameIssuer(m.Config(), want) {
			all[is.Name] = m
			continue
		}
		m, err := autocert.New(want, d.acmeOptions())
		if err != nil {
			for _, f := range fresh {
				f.Stop()
			}
			return nil, nil, err
		}
		all[is.Name], fresh[is.Name] = m, m
	}
	return all, fresh, nil
}

func (d *Daemon) acmeOptions() autocert.Options {
	o := autocert.Options{StateDir: d.opts.StateDir, RetryBase: d.opts.ACMERetryBase, Logger: d.log, OnOrder: d.metrics.acmeOrder}
	if st := d.opts.StateStore; st != nil {
		o.Storage, o.Poll = st, d.opts.StorePoll
		if o.Poll <= 0 {
			o.Poll = 30 * time.Second
		}
	}
	return o
}

func sameIssuer(a, b autocert.IssuerConfig) bool {
	return a.Name == b.Name && a.Directory == b.Directory && a.Email == b.Email &&
		a.ListenAddr == b.ListenAddr && slices.Equal(a.CARoots, b.CARoots)
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

// commitACMELocked makes the managers of next the running ones: each keeps certificates
// for exactly the domains next serves with it, and managers no longer used stop.
func (d *Daemon) commitACMELocked(next *generation) {
	domains := map[string]map[string]bool{}
	for _, br := range next.routes {
		if is := br.ep.TLS.Issuer; is != "" && is != schema.InternalIssuer && br.ep.TLS.Certificate == nil {
			if domains[is] == nil {
				domains[is] = map[string]bool{}
			}
			domains[is][br.ep.Domain] = true
		}
	}
	for name, m := range d.acme {
		if next.acme[name] != m {
			m.Stop()
		}
	}
	d.acme = next.acme
	for name, m := range d.acme {
		m.Retain(domains[name])
	}
}
