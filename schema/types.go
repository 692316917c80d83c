package schema

import (
	"slices"
	"time"
)

// APIVersion is the only configuration language version tlsd reads.
const APIVersion = "tlsd/v1"

// Where TLS is terminated.
const (
	TerminateEdge     = "edge"
	TerminateAgent    = "agent"
	TerminateUpstream = "upstream"
)

// InternalIssuer names the built-in local CA; no Issuer document may take this name.
const InternalIssuer = "internal"

// Pos is where a value came from.
type Pos struct {
	File   string
	Line   int // 1-based
	Column int // 1-based
}

// Config is a loaded, valid configuration: every endpoint and issuer of a directory. Its
// JSON form (admin API /config) spells fields as the YAML does.
type Config struct {
	// Roots are the paths the configuration was loaded from, as given; nil in a
	// configuration made Portable.
	Roots      []string    `json:"roots,omitempty"`
	Files      []string    `json:"files"` // every file read, in load order
	Endpoints  []*Endpoint `json:"endpoints"`
	Issuers    []*Issuer   `json:"issuers"`
	IPPolicies []*IPPolicy `json:"ip_policies,omitempty"`
}

// Endpoint is one Endpoint document with defaults applied and paths made absolute-or-
// relative-to-cwd (resolved against the document's file).
type Endpoint struct {
	Name     string `json:"name"`
	Domain   string `json:"domain"`             // lower case
	Listen   string `json:"listen,omitempty"`   // "" means the daemon's --listen
	Upstream string `json:"upstream,omitempty"` // "host:port", "unix:PATH" or "tls://host:port"; or Upstreams
	// Upstreams is a pool instead of Upstream, chosen from by LoadBalancing ("" with
	// Upstream, else round_robin by default).
	Upstreams             []string     `json:"upstreams,omitempty"`
	LoadBalancing         string       `json:"load_balancing,omitempty"`
	HealthCheck           *HealthCheck `json:"health_check,omitempty"`
	UpstreamTLS           *UpstreamTLS `json:"upstream_tls,omitempty"`
	TerminateAt           string       `json:"terminate_at"` // edge | agent | upstream
	Agent                 string       `json:"agent,omitempty"`
	UpstreamProxyProtocol string       `json:"upstream_proxy_protocol,omitempty"` // "", "v1" or "v2"
	// IPRestriction, when set, limits the client addresses admitted. Its CIDRs are
	// canonical ("192.0.2.7/32"); Allow and Deny are the lists in force, the endpoint's
	// own and its policies' merged, which is what serving and planning use.
	IPRestriction *IPRestriction `json:"ip_restriction,omitempty"`
	Limits        *Limits        `json:"limits,omitempty"`
	Timeouts      *Timeouts      `json:"timeouts,omitempty"`
	// Fallback makes the endpoint take its listener's connections without a known SNI.
	Fallback bool        `json:"fallback,omitempty"`
	TLS      EndpointTLS `json:"tls"`

	Pos Pos `json:"-"` // the document's first line
}

// EndpointTLS holds the TLS settings of an endpoint that tlsd terminates.
type EndpointTLS struct {
	MinVersion  string            `json:"min_version,omitempty"` // "1.2" or "1.3" where tlsd terminates; "" for upstream
	MaxVersion  string            `json:"max_version,omitempty"` // likewise; "1.3" unless the edge says "1.2"
	ALPN        []string          `json:"alpn,omitempty"`        // protocols offered, in order of preference
	Certificate *CertificateFiles `json:"certificate,omitempty"`
	Issuer      string            `json:"issuer,omitempty"`
	MutualTLS   *MutualTLS        `json:"mutual_tls,omitempty"`
}

// CertificateFiles names a PEM certificate chain and its key.
type CertificateFiles struct {
	Crt string `json:"crt"`
	Key string `json:"key"`
	// SHA256 is the certificate file's content hash (hex), recorded by Load so that a
	// certificate rotated under the same file names is a change. The key's content is
	// not hashed: a new key comes with a new certificate, and a key's hash is nothing to
	// publish. Empty with SkipFiles.
	SHA256 string `json:"sha256,omitempty"`
}

// MutualTLS is how an endpoint asks clients for certificates: the CA files they must
// chain to, how strictly, and which verified certificates are admitted.
type MutualTLS struct {
	CertificateAuthorities []string `json:"certificate_authorities,omitempty"`
	SHA256                 string   `json:"sha256,omitempty"` // the files' content, as for CertificateFiles
	// VerificationStrategy is StrategyRequireAndVerify (the default), StrategyRequireAny
	// or StrategyRequest.
	VerificationStrategy string       `json:"verification_strategy"`
	Allow                *ClientAllow `json:"allow,omitempty"`
}

// Verification strategies of mutual_tls.
const (
	StrategyRequireAndVerify = "require-and-verify"
	StrategyRequireAny       = "require-any"
	StrategyRequest          = "request"
)

// ClientAllow is mutual_tls.allow: a verified certificate must match an entry.
type ClientAllow struct {
	CommonNames         []string `json:"common_names,omitempty"`
	DNSNames            []string `json:"dns_names,omitempty"`
	URIs                []string `json:"uris,omitempty"`
	EmailAddresses      []string `json:"email_addresses,omitempty"`
	OrganizationalUnits []string `json:"organizational_units,omitempty"`
}

// IPRestriction is an endpoint's ip_restriction.
type IPRestriction struct {
	AllowCIDRs []string `json:"allow_cidrs,omitempty"`
	DenyCIDRs  []string `json:"deny_cidrs,omitempty"`
	Policies   []string `json:"policies,omitempty"`
	// Allow and Deny merge AllowCIDRs and DenyCIDRs with those of the policies, sorted
	// and without duplicates; Load fills them.
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// HealthCheck is an endpoint's active upstream checks; durations canonical.
type HealthCheck struct {
	Interval string `json:"interval"`
	Timeout  string `json:"timeout"`
	Type     string `json:"type"` // "tcp" or "tls"
}

// UpstreamTLS is how tlsd speaks TLS to tls:// upstreams.
type UpstreamTLS struct {
	ServerName             string            `json:"server_name,omitempty"`
	CertificateAuthorities []string          `json:"certificate_authorities,omitempty"`
	SHA256                 string            `json:"sha256,omitempty"` // the CA files' content, as for MutualTLS
	Certificate            *CertificateFiles `json:"certificate,omitempty"`
	InsecureSkipVerify     bool              `json:"insecure_skip_verify,omitempty"`
}

// UpstreamTLSPrefix marks an upstream that tlsd speaks TLS to.
const UpstreamTLSPrefix = "tls://"

// Pool is the endpoint's upstream entries: Upstreams, or Upstream alone.
func (ep *Endpoint) Pool() []string {
	if len(ep.Upstreams) > 0 {
		return ep.Upstreams
	}
	return []string{ep.Upstream}
}

// Limits bound an endpoint's connections; zero or "" means no bound.
type Limits struct {
	MaxConnections      int    `json:"max_connections,omitempty"`
	MaxConnectionsPerIP int    `json:"max_connections_per_ip,omitempty"`
	RatePerIP           string `json:"rate_per_ip,omitempty"` // "N/s" or "N/m"; see ParseRate
}

// Timeouts close open connections. Each is a Go duration, canonical ("5m0s"), or "".
type Timeouts struct {
	Idle        string `json:"idle,omitempty"`
	MaxLifetime string `json:"max_lifetime,omitempty"`
	HalfClose   string `json:"half_close,omitempty"`
}

// IPPolicy is one IPPolicy document: address lists endpoints share.
type IPPolicy struct {
	Name       string   `json:"name"`
	AllowCIDRs []string `json:"allow_cidrs,omitempty"`
	DenyCIDRs  []string `json:"deny_cidrs,omitempty"`
	Pos        Pos      `json:"-"`
}

// Issuer is one Issuer document.
type Issuer struct {
	Name string `json:"name"`
	ACME ACME   `json:"acme"`
	Pos  Pos    `json:"-"`
}

// ACME configures an ACME certificate authority.
type ACME struct {
	Directory string   `json:"directory"`
	Email     string   `json:"email,omitempty"`
	CARoots   []string `json:"ca_roots,omitempty"`
	// Challenges are the challenge types offered, in order of preference; Load fills in
	// DefaultChallenges when the document lists none.
	Challenges      []string         `json:"challenges"`
	ExternalAccount *ExternalAccount `json:"external_account,omitempty"`
	DNS             *DNSProvider     `json:"dns,omitempty"`
	// PropagationTimeout is how long an rfc2136 TXT record may take to be seen (canonical
	// Go duration; DefaultPropagationTimeout when unset).
	PropagationTimeout string `json:"propagation_timeout,omitempty"`
}

// ACME challenge types (RFC 8555 §8, RFC 8737).
const (
	ChallengeTLSALPN = "tls-alpn-01"
	ChallengeHTTP    = "http-01"
	ChallengeDNS     = "dns-01"
)

// DefaultChallenges is what an issuer offers when it lists no challenges: TLS-ALPN-01
// needs nothing but the endpoints' own listener.
var DefaultChallenges = []string{ChallengeTLSALPN}

// DefaultPropagationTimeout bounds the wait for a DNS-01 record when the issuer sets none.
const DefaultPropagationTimeout = 2 * time.Minute

// Offers reports whether the issuer offers the challenge type.
func (a ACME) Offers(challenge string) bool { return slices.Contains(a.Challenges, challenge) }

// ExternalAccount binds the ACME account to an account the CA already knows (RFC 8555
// §7.3.4): ZeroSSL, Google Trust Services and most private CAs require it.
type ExternalAccount struct {
	KeyID      string `json:"key_id"`
	MACKeyFile string `json:"mac_key_file"` // base64url HMAC key
}

// DNSProvider publishes DNS-01 TXT records: by RFC 2136 dynamic update, or by a hook.
type DNSProvider struct {
	RFC2136 *RFC2136 `json:"rfc2136,omitempty"`
	// Exec is a hook run as EXEC... present|cleanup FQDN VALUE; exit 0 means done.
	Exec []string `json:"exec,omitempty"`
}

// RFC2136 is an authoritative DNS server taking TSIG-signed dynamic updates.
type RFC2136 struct {
	Server         string `json:"server"`         // host:port (Load adds :53)
	TSIGKeyName    string `json:"tsig_key_name"`  // fully qualified (Load adds the dot)
	TSIGAlgorithm  string `json:"tsig_algorithm"` // hmac-sha256 unless set
	TSIGSecretFile string `json:"tsig_secret_file"`
}

// Options tune Load.
type Options struct {
	// SkipFiles checks everything but the files that documents reference (certificates,
	// keys, CA bundles): for CI, where secrets are not in the repository.
	SkipFiles bool
	// Now is the clock for certificate expiry checks; zero means time.Now.
	Now time.Time
	// Role limits the file checks to what one side of a split deployment needs:
	// RoleEdge skips the keys of agent- and upstream-terminated endpoints that an agent
	// serves; RoleAgent checks only the files of endpoints an agent terminates (those of
	// Agent alone, if set). "" or RoleAll checks everything.
	Role  string
	Agent string
	// HTTPListen says the daemon answers HTTP-01 (tlsd run|edge --http-listen): an
	// issuer offering http-01 draws no warning then.
	HTTPListen bool
	// Exclude leaves out files and directories below a root that match one of these
	// patterns (path.Match syntax): a pattern with a slash is matched against the path
	// relative to the root, one without against the name alone. For trees that hold other
	// YAML, such as a docker-compose.yml.
	Exclude []string
}

// Roles of a split deployment, for Options.Role.
const (
	RoleAll   = "all"
	RoleEdge  = "edge"
	RoleAgent = "agent"
)

// NeedsFiles reports whether the process in role (agent name for RoleAgent, "" for any
// agent) reads the certificate, key and CA files of ep.
func NeedsFiles(ep *Endpoint, role, agent string) bool {
	switch role {
	case RoleEdge:
		return ep.Agent == "" || ep.TerminateAt == TerminateEdge
	case RoleAgent:
		return ep.Agent != "" && ep.TerminateAt == TerminateAgent && (agent == "" || ep.Agent == agent)
	}
	return true
}

// ExpiryWarning is how close to its expiry a certificate draws a warning.
const ExpiryWarning = 14 * 24 * time.Hour
