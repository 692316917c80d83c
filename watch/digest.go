package watch

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"slices"

	"github.com/tlsd/tlsd/schema"
)

// Digest identifies what cfg means: a SHA-256 over its portable form (so identical
// trees give identical digests wherever they are checked out) and the contents of the
// certificate and CA files it references, named as the portable form names them.
// Private keys and other secrets are left out: a key only ever changes with its
// certificate, and a digest is shown everywhere.
func Digest(cfg *schema.Config) string {
	portable := cfg.Portable()
	h := sha256.New()
	json.NewEncoder(h).Encode(portable)
	type file struct{ name, path string }
	var files []file
	names, paths := publicFiles(portable), publicFiles(cfg) // the same walk: index i is one file
	for i := range min(len(names), len(paths)) {
		files = append(files, file{names[i], paths[i]})
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(a.name, b.name) })
	files = slices.CompactFunc(files, func(a, b file) bool { return a.name == b.name })
	for _, f := range files {
		io.WriteString(h, "\x00"+f.name+"\x00")
		if data, err := os.ReadFile(f.path); err == nil {
			h.Write(data)
		} else {
			io.WriteString(h, "unreadable")
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// publicFiles are the certificate and CA files cfg references, in the order of its
// documents.
func publicFiles(cfg *schema.Config) []string {
	var out []string
	for _, ep := range cfg.Endpoints {
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
	for _, is := range cfg.Issuers {
		out = append(out, is.ACME.CARoots...)
	}
	return out
}
