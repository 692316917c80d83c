package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"slices"
)

// Digest identifies what c means: a SHA-256 over its portable form (so identical trees
// give identical digests wherever they are checked out) and the contents of the
// certificate and CA files it references. Private keys and other secrets are left out: a
// key only ever changes with its certificate, and a digest is shown everywhere.
func (c *Config) Digest() string {
	h := sha256.New()
	json.NewEncoder(h).Encode(c.Portable())
	for _, f := range c.publicFiles() {
		io.WriteString(h, "\x00"+c.portablePath(f, f)+"\x00")
		if data, err := os.ReadFile(f); err == nil {
			h.Write(data)
		} else {
			io.WriteString(h, "unreadable")
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// publicFiles are the certificate and CA files c references, sorted, once each.
func (c *Config) publicFiles() []string {
	var out []string
	for _, ep := range c.Endpoints {
		if f := ep.TLS.Certificate; f != nil {
			out = append(out, f.Crt)
		}
		if m := ep.TLS.MutualTLS; m != nil {
			out = append(out, m.CertificateAuthorities...)
		}
		if u := ep.UpstreamTLS; u != nil {
			out = append(out, u.CertificateAuthorities...)
			if u.Certificate != nil {
				out = append(out, u.Certificate.Crt)
			}
		}
	}
	for _, is := range c.Issuers {
		out = append(out, is.ACME.CARoots...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
