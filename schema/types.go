package schema

import "time"

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

// Config is a loaded, valid configuration: every endpoint and issuer of a directory.
type Config struct {
	Files     []string // every file read, in load order
	Endpoints []*Endpoint
	Issuers   []*Issuer
}

// Endpoint is one Endpoint document with defaults applied and paths made absolute-or-
// relative-to-cwd (resolved against the document's file).
type Endpoint struct {
	Name                  string
	Domain                string // lower case
	Listen                string // "" means the daemon's --listen
	Upstream              string // "host:port" or "unix:PATH"
	TerminateAt           string // edge | agent | upstream
	Agent                 string
	UpstreamProxyProtocol string // "", "v1" or "v2"
	TLS                   EndpointTLS

	Pos Pos // the document's first line
}

// EndpointTLS holds the TLS settings of an endpoint that tlsd terminates.
type EndpointTLS struct {
	MinVersion  string // "1.2" or "1.3" where tlsd terminates; "" for upstream
	Certificate *CertificateFiles
	Issuer      string
	MutualTLS   *MutualTLS
}

// CertificateFiles names a PEM certificate chain and its key.
type CertificateFiles struct {
	Crt string
	Key string
	// SHA256 covers both files' content (hex), recorded by Load so that a certificate
	// rotated under the same file names is a change. Empty with SkipFiles.
	SHA256 string `json:",omitempty"`
}

// MutualTLS lists the CA files that client certificates must chain to.
type MutualTLS struct {
	CertificateAuthorities []string
	SHA256                 string `json:",omitempty"` // the files' content, as for CertificateFiles
}

// Issuer is one Issuer document.
type Issuer struct {
	Name string
	ACME ACME
	Pos  Pos
}

// ACME configures an ACME certificate authority.
type ACME struct {
	Directory string
	Email     string
	CARoots   []string
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
