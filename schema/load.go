package schema

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// MaxFileSize bounds one configuration file; endpoint files are a few hundred bytes each.
const MaxFileSize = 8 << 20

// Result is what Load found.
type Result struct {
	// Config is the loaded configuration, or nil when Diagnostics holds an error.
	Config      *Config
	Diagnostics Diagnostics
	// Counts for summaries, including documents that had errors.
	Files, Endpoints, Issuers int
}

// Load reads the configuration at paths (directories, searched recursively, or files) and
// validates it: schema, semantics and, unless opts.SkipFiles, the files it references.
// The error is only for paths that cannot be read at all; everything wrong with the
// content is a Diagnostic.
func Load(opts Options, paths ...string) (*Result, error) {
	files, err := configFiles(paths, opts.Exclude)
	if err != nil {
		return nil, err
	}
	l, err := newLoader(opts)
	if err != nil {
		return nil, err
	}
	l.roots = paths
	for _, f := range files {
		data, err := readConfigFile(f)
		if err != nil {
			l.diags = append(l.diags, diagAt(Pos{File: f, Line: 1, Column: 1}, "", SeverityError, "file-unreadable", "%v", err))
			l.files = append(l.files, f)
			continue
		}
		l.addFile(f, data)
	}
	return l.finish(), nil
}

// LoadData validates one file's content as if read from name. References to other files
// are resolved against name's directory.
func LoadData(opts Options, name string, data []byte) (*Result, error) {
	l, err := newLoader(opts)
	if err != nil {
		return nil, err
	}
	l.roots = []string{name}
	l.addFile(name, data)
	return l.finish(), nil
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("read %s: file is larger than %d MiB", path, MaxFileSize>>20)
	}
	return data, nil
}

// loader accumulates documents of all files, then runs the checks that span documents.
type loader struct {
	opts      Options
	roots     []string // the paths Load was given
	v         *validator
	diags     Diagnostics
	files     []string
	endpoints []*endpointDoc
	issuers   []*issuerDoc
	policies  []*policyDoc
	// names of every IPPolicy document, valid or not, as issuerNames for issuers.
	policyNames map[string]bool
	// names of every Issuer document, valid or not, so that a broken issuer does not
	// also make every endpoint using it report "unknown issuer".
	issuerNames map[string]bool
	// issuerByName is the first Issuer document of each name.
	issuerByName map[string]*Issuer
	nEndpoints   int
	refs         *fileCache
}

type endpointDoc struct {
	ep         *Endpoint
	doc        *document
	modeFailed bool // the schema's terminate_at rules failed
}

type issuerDoc struct {
	is  *Issuer
	doc *document
}

type policyDoc struct {
	p   *IPPolicy
	doc *document
}

func newLoader(opts Options) (*loader, error) {
	v, err := compiled()
	if err != nil {
		return nil, err
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	return &loader{opts: opts, v: v, issuerNames: map[string]bool{}, issuerByName: map[string]*Issuer{}, policyNames: map[string]bool{}, refs: newFileCache()}, nil
}

func (l *loader) addFile(name string, data []byte) {
	l.files = append(l.files, name)
	docs, diags := parseDocuments(name, data)
	l.diags = append(l.diags, diags...)
	if len(docs) == 0 && len(diags) == 0 {
		l.diags = append(l.diags, diagAt(Pos{File: name, Line: 1, Column: 1}, "", SeverityWarning, "empty-file",
			"the file holds no document, so it configures nothing"))
	}
	for _, d := range docs {
		l.addDocument(d)
	}
}

func (l *loader) addDocument(d *document) {
	m, _ := d.instance.(map[string]any)
	kind, _ := m["kind"].(string)
	name, _ := m["name"].(string)
	switch kind {
	case "Endpoint":
		l.nEndpoints++
	case "Issuer":
		l.issuerNames[name] = true
	case "IPPolicy":
		l.policyNames[name] = true
	}
	diags, modeFailed := l.v.check(d)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	switch kind {
	case "Endpoint":
		l.endpoints = append(l.endpoints, &endpointDoc{ep: buildEndpoint(d, m), doc: d, modeFailed: modeFailed})
	case "Issuer":
		l.issuers = append(l.issuers, &issuerDoc{is: buildIssuer(d, m), doc: d})
	case "IPPolicy":
		l.policies = append(l.policies, &policyDoc{p: buildPolicy(d, m), doc: d})
	}
}

func (l *loader) finish() *Result {
	l.checkIssuers()
	l.checkPolicies()
	l.checkEndpoints()
	l.checkFallbacks()
	l.resolveRestrictions()
	l.diags = dedupe(l.diags)
	l.diags.Sort()
	r := &Result{Diagnostics: l.diags, Files: len(l.files), Endpoints: l.nEndpoints, Issuers: len(l.issuerNames)}
	if r.Diagnostics == nil {
		r.Diagnostics = Diagnostics{}
	}
	if !l.diags.HasErrors() {
		r.Config = &Config{Roots: l.roots, Files: l.files}
		for _, e := range l.endpoints {
			r.Config.Endpoints = append(r.Config.Endpoints, e.ep)
		}
		for _, i := range l.issuers {
			r.Config.Issuers = append(r.Config.Issuers, i.is)
		}
		for _, p := range l.policies {
			r.Config.IPPolicies = append(r.Config.IPPolicies, p.p)
		}
	}
	return r
}

func dedupe(ds Diagnostics) Diagnostics {
	type key struct {
		file      string
		line, col int
		code, msg string
	}
	seen := make(map[key]bool, len(ds))
	out := ds[:0]
	for _, d := range ds {
		k := key{d.File, d.Line, d.Column, d.Code, d.Message}
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func obj(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	return o
}

func integer(m map[string]any, key string) int {
	n, _ := m[key].(int64)
	return int(min(max(n, -1<<31), 1<<31-1)) // a bound far past any sane limit, and int-sized
}

func strs(m map[string]any, key string) []string {
	list, _ := m[key].([]any)
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// buildEndpoint makes the typed endpoint of a schema-valid document, applying defaults
// and resolving file paths against the document's file.
func buildEndpoint(d *document, m map[string]any) *Endpoint {
	ep := &Endpoint{
		Name:                  str(m, "name"),
		Domain:                toLowerASCII(str(m, "domain")),
		Listen:                str(m, "listen"),
		Upstream:              str(m, "upstream"),
		TerminateAt:           str(m, "terminate_at"),
		Agent:                 str(m, "agent"),
		UpstreamProxyProtocol: str(m, "upstream_proxy_protocol"),
		Pos:                   d.nodePos(d.root),
	}
	if r := obj(m, "ip_restriction"); r != nil {
		ep.IPRestriction = &IPRestriction{AllowCIDRs: strs(r, "allow_cidrs"), DenyCIDRs: strs(r, "deny_cidrs"), Policies: strs(r, "policies")}
	}
	if l := obj(m, "limits"); l != nil {
		ep.Limits = &Limits{MaxConnections: integer(l, "max_connections"), MaxConnectionsPerIP: integer(l, "max_connections_per_ip"), RatePerIP: str(l, "rate_per_ip")}
	}
	if t := obj(m, "timeouts"); t != nil {
		ep.Timeouts = &Timeouts{Idle: str(t, "idle"), MaxLifetime: str(t, "max_lifetime"), HalfClose: str(t, "half_close")}
	}
	ep.Fallback, _ = m["fallback"].(bool)
	if ep.TerminateAt == "" {
		ep.TerminateAt = TerminateUpstream
	}
	ep.Upstream = resolveUpstream(d, ep.Upstream)
	for _, u := range strs(m, "upstreams") {
		ep.Upstreams = append(ep.Upstreams, resolveUpstream(d, u))
	}
	if _, pool := m["upstreams"]; pool {
		ep.LoadBalancing = cmp.Or(str(m, "load_balancing"), "round_robin")
	}
	if h := obj(m, "health_check"); h != nil {
		ep.HealthCheck = &HealthCheck{Interval: cmp.Or(str(h, "interval"), "5s"), Timeout: cmp.Or(str(h, "timeout"), "1s"), Type: cmp.Or(str(h, "type"), "tcp")}
	}
	if u := obj(m, "upstream_tls"); u != nil {
		ep.UpstreamTLS = buildUpstreamTLS(d, u)
	}
	t := obj(m, "tls")
	ep.TLS.MinVersion, ep.TLS.MaxVersion = str(t, "min_version"), str(t, "max_version")
	if ep.TerminateAt != TerminateUpstream {
		// The agent's are always 1.2 to 1.3; the upstream's are not tlsd's to say.
		ep.TLS.MinVersion = cmp.Or(ep.TLS.MinVersion, "1.2")
		ep.TLS.MaxVersion = cmp.Or(ep.TLS.MaxVersion, "1.3")
	}
	ep.TLS.ALPN = strs(t, "alpn")
	ep.TLS.Issuer = str(t, "issuer")
	if c := obj(t, "certificate"); c != nil {
		ep.TLS.Certificate = &CertificateFiles{Crt: resolvePath(d.file, str(c, "crt")), Key: resolvePath(d.file, str(c, "key"))}
	}
	if mt := obj(t, "mutual_tls"); mt != nil {
		ep.TLS.MutualTLS = buildMutualTLS(d, mt)
	}
	return ep
}

// resolveUpstream makes a relative unix socket path relative to the document's file.
func resolveUpstream(d *document, u string) string {
	if p, ok := cutUnix(u); ok {
		return "unix:" + resolvePath(d.file, p)
	}
	return u
}

func buildUpstreamTLS(d *document, u map[string]any) *UpstreamTLS {
	t := &UpstreamTLS{ServerName: str(u, "server_name"), InsecureSkipVerify: u["insecure_skip_verify"] == true}
	for _, ca := range strs(u, "certificate_authorities") {
		t.CertificateAuthorities = append(t.CertificateAuthorities, resolvePath(d.file, ca))
	}
	if c := obj(u, "certificate"); c != nil {
		t.Certificate = &CertificateFiles{Crt: resolvePath(d.file, str(c, "crt")), Key: resolvePath(d.file, str(c, "key"))}
	}
	return t
}

func buildMutualTLS(d *document, mt map[string]any) *MutualTLS {
	cas := strs(mt, "certificate_authorities")
	for i := range cas {
		cas[i] = resolvePath(d.file, cas[i])
	}
	m := &MutualTLS{CertificateAuthorities: cas, VerificationStrategy: cmp.Or(str(mt, "verification_strategy"), StrategyRequireAndVerify)}
	if a := obj(mt, "allow"); a != nil {
		m.Allow = &ClientAllow{CommonNames: strs(a, "common_names"), DNSNames: strs(a, "dns_names"), URIs: strs(a, "uris"),
			EmailAddresses: strs(a, "email_addresses"), OrganizationalUnits: strs(a, "organizational_units")}
	}
	return m
}

func buildPolicy(d *document, m map[string]any) *IPPolicy {
	return &IPPolicy{Name: str(m, "name"), AllowCIDRs: strs(m, "allow_cidrs"), DenyCIDRs: strs(m, "deny_cidrs"), Pos: d.nodePos(d.root)}
}

func buildIssuer(d *document, m map[string]any) *Issuer {
	a := obj(m, "acme")
	roots := strs(a, "ca_roots")
	for i := range roots {
		roots[i] = resolvePath(d.file, roots[i])
	}
	acme := ACME{Directory: str(a, "directory"), Email: str(a, "email"), CARoots: roots,
		Challenges: strs(a, "challenges"), PropagationTimeout: str(a, "propagation_timeout")}
	if len(acme.Challenges) == 0 {
		acme.Challenges = slices.Clone(DefaultChallenges)
	}
	if e := obj(a, "external_account"); e != nil {
		acme.ExternalAccount = &ExternalAccount{KeyID: str(e, "key_id"), MACKeyFile: resolvePath(d.file, str(e, "mac_key_file"))}
	}
	acme.DNS = buildDNS(d, obj(a, "dns"))
	return &Issuer{Name: str(m, "name"), ACME: acme, Pos: d.nodePos(d.root)}
}

func buildDNS(d *document, m map[string]any) *DNSProvider {
	if m == nil {
		return nil
	}
	p := &DNSProvider{}
	if r := obj(m, "rfc2136"); r != nil {
		p.RFC2136 = &RFC2136{Server: str(r, "server"), TSIGKeyName: str(r, "tsig_key_name"),
			TSIGAlgorithm: cmp.Or(str(r, "tsig_algorithm"), "hmac-sha256"), TSIGSecretFile: resolvePath(d.file, str(r, "tsig_secret_file"))}
	}
	if _, ok := m["exec"]; ok {
		p.Exec = strs(m, "exec")
		// A hook named by a relative path is relative to the document, like every file;
		// a bare name is looked up on PATH when it runs.
		if len(p.Exec) > 0 && strings.Contains(p.Exec[0], "/") {
			p.Exec[0] = resolvePath(d.file, p.Exec[0])
		}
	}
	return p
}

func cutUnix(upstream string) (string, bool) {
	if len(upstream) > 5 && upstream[:5] == "unix:" {
		return upstream[5:], true
	}
	return "", false
}

func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
