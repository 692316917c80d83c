package schema

import (
	"path/filepath"
	"strings"
)

// Portable returns a copy of c that means the same wherever it was loaded from and
// whatever the working directory: file paths inside a root are relative to that root,
// those outside it absolute, and positions are dropped. Two checkouts of one repository
// are equal in this form, so comparing it compares meaning, not spelling. A
// configuration already portable (no Roots) is copied as it is.
func (c *Config) Portable() *Config {
	if c == nil {
		return nil
	}
	out := &Config{Files: make([]string, len(c.Files))}
	for i, f := range c.Files {
		out.Files[i] = c.portablePath(f, f)
	}
	for _, ep := range c.Endpoints {
		out.Endpoints = append(out.Endpoints, c.portableEndpoint(ep))
	}
	for _, is := range c.Issuers {
		cp := *is
		cp.Pos = Pos{}
		cp.ACME.CARoots = c.portablePaths(is.Pos.File, is.ACME.CARoots)
		out.Issuers = append(out.Issuers, &cp)
	}
	for _, p := range c.IPPolicies {
		cp := *p
		cp.Pos = Pos{}
		out.IPPolicies = append(out.IPPolicies, &cp)
	}
	return out
}

func (c *Config) portableEndpoint(ep *Endpoint) *Endpoint {
	cp := *ep
	cp.Pos = Pos{}
	if f := ep.TLS.Certificate; f != nil {
		cf := *f
		cf.Crt, cf.Key = c.portablePath(ep.Pos.File, f.Crt), c.portablePath(ep.Pos.File, f.Key)
		cp.TLS.Certificate = &cf
	}
	if m := ep.TLS.MutualTLS; m != nil {
		mc := *m
		mc.CertificateAuthorities = c.portablePaths(ep.Pos.File, m.CertificateAuthorities)
		cp.TLS.MutualTLS = &mc
	}
	return &cp
}

func (c *Config) portablePaths(doc string, paths []string) []string {
	if paths == nil {
		return nil
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = c.portablePath(doc, p)
	}
	return out
}

// portablePath spells p, referenced from the document file doc, relative to the root
// doc was found under when p lies inside it, else as an absolute path.
func (c *Config) portablePath(doc, p string) string {
	if len(c.Roots) == 0 || p == "" {
		return p
	}
	if base, ok := c.rootOf(doc); ok && inside(base, p) {
		rel, _ := filepath.Rel(base, p)
		return filepath.ToSlash(rel)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// rootOf finds the directory of the root that file was loaded from: the root itself, or
// a file root's directory.
func (c *Config) rootOf(file string) (string, bool) {
	for _, r := range c.Roots {
		if filepath.Clean(file) == filepath.Clean(r) {
			return filepath.Dir(r), true
		}
		if inside(r, file) {
			return r, true
		}
	}
	return "", false
}

// inside reports whether p lies below dir, lexically.
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
