package admin

import (
	"time"

	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel/client"
	"github.com/tlsd/tlsd/tunnel/server"
	"github.com/tlsd/tlsd/upstream"
	"github.com/tlsd/tlsd/version"
)

// Where a certificate comes from (CertificateStatus.Source): files the operator renews,
// or an issuer tlsd renews on its own (the internal one's leaves live seven days, so
// "expires within 14 days" is their normal state and not worth an alert).
const (
	SourceFile     = "file"
	SourceInternal = "internal"
	SourceACME     = "acme"
)

// Attempt is the outcome of the last load-and-apply.
type Attempt struct {
	OK bool `json:"ok"`
	// Revision is the revision of the files this attempt read (see ConfigStatus).
	Revision    string             `json:"revision,omitempty"`
	At          time.Time          `json:"at"`
	Error       string             `json:"error,omitempty"`
	Diagnostics schema.Diagnostics `json:"diagnostics"`
}

// ConfigStatus identifies the configuration being served: Digest is what it means
// (identical trees give identical digests wherever they are checked out), Revision where
// it comes from: the git commit (or REVISION file) its roots are at, when they all agree.
// Dirty: the files differ from that commit.
type ConfigStatus struct {
	Revision  string         `json:"revision,omitempty"`
	Dirty     bool           `json:"dirty,omitempty"`
	Digest    string         `json:"digest"`
	Roots     []RootRevision `json:"roots"`
	AppliedAt time.Time      `json:"applied_at"`
}

// RootRevision is the revision one root is at.
type RootRevision struct {
	Path     string `json:"path"`
	Revision string `json:"revision,omitempty"`
	Dirty    bool   `json:"dirty,omitempty"`
	Source   string `json:"source,omitempty"` // git or REVISION
}

// Status is what /status reports.
type Status struct {
	Build         version.Info `json:"build"`
	StartedAt     time.Time    `json:"started_at"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	// Unrouted counts the connections no endpoint took (no or unknown SNI, not TLS,
	// silent, refused at accept), since the start.
	Unrouted    EndpointTotals   `json:"unrouted"`
	Generation  uint64           `json:"generation"`
	AppliedAt   time.Time        `json:"applied_at"`
	Config      *ConfigStatus    `json:"config,omitempty"`
	LastAttempt Attempt          `json:"last_attempt"`
	Endpoints   []EndpointStatus `json:"endpoints"`
	// Draining are endpoints no longer configured whose connections are still open.
	Draining []DrainingStatus `json:"draining,omitempty"`
	// Agents are the tunnel sessions of an edge.
	Agents []server.AgentStatus `json:"agents,omitempty"`
	// StateStore is the fleet's shared store, when there is one.
	StateStore *StateStoreStatus `json:"state_store,omitempty"`
	// HTTPListen is the bound address of --http-listen, when given.
	HTTPListen string `json:"http_listen,omitempty"`
	// Tunnel is an edge's own tunnel certificate (each agent's is in Agents).
	Tunnel *CertificateStatus `json:"tunnel_certificate,omitempty"`
}

// StateStoreStatus is whether the last call to the shared state store reached it.
type StateStoreStatus struct {
	URL   string    `json:"url"` // without its password
	Up    bool      `json:"up"`
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"`
}

// DrainingStatus is an endpoint that is gone but still has open connections.
type DrainingStatus struct {
	Name              string `json:"name"`
	ActiveConnections int    `json:"active_connections"`
}

// EndpointStatus is one endpoint of the running generation.
type EndpointStatus struct {
	Name              string `json:"name"`
	Domain            string `json:"domain"`
	Listen            string `json:"listen"` // the bound address
	TerminateAt       string `json:"terminate_at"`
	Upstream          string `json:"upstream"`
	ActiveConnections int    `json:"active_connections"`
	// Totals are the endpoint's connections since tlsd started, and how many failed.
	Totals EndpointTotals `json:"totals"`
	// DrainingConnections are those of ActiveConnections still on the endpoint's settings
	// from before its last change.
	DrainingConnections int                `json:"draining_connections,omitempty"`
	Certificate         *CertificateStatus `json:"certificate,omitempty"`
	// Agent serves the endpoint in a split deployment; AgentLive says whether the edge
	// has a session of it right now.
	Agent     string `json:"agent,omitempty"`
	AgentLive *bool  `json:"agent_live,omitempty"`
	// Limits and Timeouts are the endpoint's; LimitedConnections are the connections that
	// hold a place under its limits, every generation's together.
	// Upstreams are the entries of the endpoint's pool (one for a single upstream) where
	// this process dials them.
	Upstreams          []UpstreamStatus `json:"upstreams,omitempty"`
	Limits             *schema.Limits   `json:"limits,omitempty"`
	LimitedConnections *int             `json:"limited_connections,omitempty"`
	Timeouts           *schema.Timeouts `json:"timeouts,omitempty"`
}

// CertificateStatus describes the certificate tlsd presents for an endpoint. State and
// the fields after it are for ACME certificates: pending, valid, renewing or failed.
type CertificateStatus struct {
	NotAfter  time.Time `json:"not_after,omitzero"`
	Serial    string    `json:"serial,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	State     string    `json:"state,omitempty"`
	Error     string    `json:"error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
	RenewAt   time.Time `json:"renew_at,omitzero"`
	// Challenge is the ACME challenge type that validated the certificate served (empty
	// when it was loaded from storage).
	Challenge string `json:"challenge,omitempty"`
	// Source is where it comes from: file, internal or acme ("" for a tunnel certificate).
	Source string `json:"source,omitempty"`
	// HeldBy, on an edge, is the agent that holds the certificate and reported it over
	// the tunnel (the edge itself has no copy, nor of its key).
	HeldBy string `json:"held_by,omitempty"`
}

// UpstreamStatus is one upstream entry of an endpoint.
type UpstreamStatus struct {
	Address           string `json:"address"`
	ActiveConnections int64  `json:"active_connections"`
	upstream.HealthStatus
}

// EndpointTotals are an endpoint's connections since tlsd started, every generation's.
type EndpointTotals struct {
	Connections int64 `json:"connections"`
	Failed      int64 `json:"failed"`
}

// AgentStatus is what the agent's /status reports.
type AgentStatus struct {
	Build       version.Info        `json:"build"`
	Agent       string              `json:"agent"`
	Generation  uint64              `json:"generation"`
	AppliedAt   time.Time           `json:"applied_at"`
	Config      *ConfigStatus       `json:"config,omitempty"`
	LastAttempt Attempt             `json:"last_attempt"`
	Tunnel      client.TunnelStatus `json:"tunnel"` // every session summed up: connected while any is
	// Edges are the sessions, one per edge address.
	Edges     []client.TunnelStatus `json:"edges"`
	Endpoints []EndpointStatus      `json:"endpoints"`
	// TunnelCertificate is the client certificate the agent dials its edges with.
	TunnelCertificate *CertificateStatus `json:"tunnel_certificate,omitempty"`
}

// NewAttempt records a load-and-apply that ended now.
func NewAttempt(ok bool, diags schema.Diagnostics, err error) Attempt {
	a := Attempt{OK: ok, At: time.Now(), Diagnostics: diags}
	if a.Diagnostics == nil {
		a.Diagnostics = schema.Diagnostics{}
	}
	if err != nil {
		a.Error = err.Error()
	}
	return a
}
