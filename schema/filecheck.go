package schema

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tlsd/tlsd/certs"
)

// fileCache reads and parses each referenced file once, however many endpoints share it
// (a client CA bundle is typically shared by hundreds).
type fileCache struct {
	certs map[string]certsResult
	keys  map[string]keyResult
}

type certsResult struct {
	certs []*x509.Certificate
	sum   [32]byte // sha256 of the file
	err   error    // already worded for a diagnostic; code in errCode
	code  string
}

type keyResult struct {
	key  crypto.Signer
	mode fs.FileMode
	err  error
	code string
}

func newFileCache() *fileCache {
	return &fileCache{certs: map[string]certsResult{}, keys: map[string]keyResult{}}
}

func (c *fileCache) certificates(path string) certsResult {
	if r, ok := c.certs[path]; ok {
		return r
	}
	var r certsResult
	data, code, err := readRef(path)
	if err != nil {
		r = certsResult{err: err, code: code}
	} else if cs, err := certs.ParseCertificates(data); err != nil {
		r = certsResult{err: fmt.Errorf("%s: %w", path, err), code: "invalid-pem"}
	} else {
		r = certsResult{certs: cs, sum: sha256.Sum256(data)}
	}
	c.certs[path] = r
	return r
}

func (c *fileCache) privateKey(path string) keyResult {
	if r, ok := c.keys[path]; ok {
		return r
	}
	var r keyResult
	data, code, err := readRef(path)
	if err != nil {
		r = keyResult{err: err, code: code}
	} else if k, err := certs.ParsePrivateKey(data); err != nil {
		r = keyResult{err: fmt.Errorf("%s: %w", path, err), code: "invalid-pem"}
	} else {
		r = keyResult{key: k}
		if fi, err := os.Stat(path); err == nil {
			r.mode = fi.Mode().Perm()
		}
	}
	c.keys[path] = r
	return r
}

// readRef reads a referenced file; the error names the file and never its contents.
func readRef(path string) ([]byte, string, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "file-missing", fmt.Errorf("file %s does not exist", path)
	case err != nil:
		return nil, "file-unreadable", fmt.Errorf("cannot read %s: %w", path, unwrapPathError(err))
	case fi.IsDir():
		return nil, "file-unreadable", fmt.Errorf("%s is a directory, not a PEM file", path)
	case fi.Size() > MaxFileSize:
		return nil, "file-unreadable", fmt.Errorf("%s is larger than %d MiB; it is not a PEM file", path, MaxFileSize>>20)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "file-unreadable", fmt.Errorf("cannot read %s: %w", path, unwrapPathError(err))
	}
	return data, "", nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkEndpointFiles checks the certificate, key and client CAs an endpoint references.
func (l *loader) checkEndpointFiles(ed *endpointDoc) {
	if l.opts.SkipFiles || !NeedsFiles(ed.ep, l.opts.Role, l.opts.Agent) {
		return
	}
	tls := ed.ep.TLS
	if tls.Certificate != nil {
		l.checkPair(ed, tls.Certificate)
	}
	if tls.MutualTLS != nil {
		var sums [][32]byte
		for i, ca := range tls.MutualTLS.CertificateAuthorities {
			l.checkCAFile(ed.doc, fmt.Sprintf("/tls/mutual_tls/certificate_authorities/%d", i), ca, true)
			sums = append(sums, l.refs.certificates(ca).sum)
		}
		tls.MutualTLS.SHA256 = combinedSum(sums...)
	}
}

func (l *loader) checkPair(ed *endpointDoc, files *CertificateFiles) {
	d := ed.doc
	const crtPath, keyPath = "/tls/certificate/crt", "/tls/certificate/key"
	cr := l.refs.certificates(files.Crt)
	if cr.err != nil {
		l.add(d, crtPath, SeverityError, cr.code, "%v", cr.err)
	}
	kr := l.refs.privateKey(files.Key)
	if kr.err != nil {
		l.add(d, keyPath, SeverityError, kr.code, "%v", kr.err)
	} else if kr.mode&0o077 != 0 {
		l.add(d, keyPath, SeverityWarning, "key-permissions",
			"private key %s is readable by group or others (mode %04o); run chmod 600 %s", files.Key, kr.mode, files.Key)
	}
	if cr.err != nil {
		return
	}
	if kr.err == nil {
		ed.ep.TLS.Certificate.SHA256 = hex.EncodeToString(cr.sum[:])
	}
	leaf := cr.certs[0]
	if kr.err == nil && !certs.KeyMatches(leaf, kr.key) {
		l.add(d, keyPath, SeverityError, "key-mismatch",
			"private key %s does not match the certificate in %s", files.Key, files.Crt)
	}
	if !certs.Covers(leaf, ed.ep.Domain) {
		l.add(d, crtPath, SeverityError, "certificate-name-mismatch",
			"certificate %s is for %s, not for domain %q", files.Crt, nameList(leaf), ed.ep.Domain)
	}
	l.checkValidity(d, crtPath, files.Crt, leaf)
}

// combinedSum is the hex sha256 over the files' own sums, in order.
func combinedSum(sums ...[32]byte) string {
	h := sha256.New()
	for _, s := range sums {
		h.Write(s[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func nameList(c *x509.Certificate) string {
	names := certs.Names(c)
	if len(names) == 0 {
		return "no DNS name"
	}
	return strings.Join(names, ", ")
}

func (l *loader) checkValidity(d *document, path, file string, c *x509.Certificate) {
	now := l.opts.Now
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
	switch {
	case now.After(c.NotAfter):
		l.add(d, path, SeverityError, "certificate-expired", "certificate %s expired on %s", file, day(c.NotAfter))
	case now.Before(c.NotBefore):
		l.add(d, path, SeverityError, "certificate-not-yet-valid", "certificate %s is not valid before %s", file, day(c.NotBefore))
	case c.NotAfter.Sub(now) < ExpiryWarning:
		l.add(d, path, SeverityWarning, "certificate-expiring", "certificate %s expires on %s, in %s",
			file, day(c.NotAfter), roundDays(c.NotAfter.Sub(now)))
	}
}

func roundDays(d time.Duration) string {
	days := int(d.Hours() / 24)
	if days == 1 {
		return "1 day"
	}
	if days == 0 {
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", days)
}

// checkCAFile checks a PEM bundle of certificates; for client authentication every
// certificate in it must be a CA.
func (l *loader) checkCAFile(d *document, path, file string, needCA bool) {
	if l.opts.SkipFiles {
		return
	}
	cr := l.refs.certificates(file)
	if cr.err != nil {
		l.add(d, path, SeverityError, cr.code, "%v", cr.err)
		return
	}
	if !needCA {
		return
	}
	// Every certificate in a trust bundle is a trust anchor to crypto/tls: a leaf among
	// the CAs would be trusted as itself, whoever issued it.
	for i, c := range cr.certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			l.add(d, path, SeverityError, "not-a-ca",
				"certificate %d of %d in %s (for %s) is not a CA; a client CA file must hold only CA certificates, or that certificate itself is trusted",
				i+1, len(cr.certs), file, nameList(c))
			return
		}
	}
}

// checkClientPair checks a client certificate and key at path (crt, key below it): they
// must read, match and be valid now; a client certificate names no domain of ours.
func (l *loader) checkClientPair(d *document, path string, files *CertificateFiles) {
	cr, kr := l.refs.certificates(files.Crt), l.refs.privateKey(files.Key)
	if cr.err != nil {
		l.add(d, path+"/crt", SeverityError, cr.code, "%v", cr.err)
	}
	if kr.err != nil {
		l.add(d, path+"/key", SeverityError, kr.code, "%v", kr.err)
	}
	if cr.err != nil || kr.err != nil {
		return
	}
	files.SHA256 = hex.EncodeToString(cr.sum[:])
	if !certs.KeyMatches(cr.certs[0], kr.key) {
		l.add(d, path+"/key", SeverityError, "key-mismatch", "private key %s does not match the certificate in %s", files.Key, files.Crt)
	}
	l.checkValidity(d, path+"/crt", files.Crt, cr.certs[0])
}
