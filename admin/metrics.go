package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tlsd/tlsd/version"
)

// MetricHelp documents every metric; the README lists the same names.
var MetricHelp = map[string]string{
	"tlsd_connections_total":                                 "Connections that ended, by endpoint, mode, result (ok or failed) and reason (empty when ok).",
	"tlsd_handshakes_total":                                  "TLS handshakes tlsd performed (edge and agent endpoints), by endpoint and result.",
	"tlsd_connection_failures_total":                         "Failed connections by endpoint and reason (unknown_sni, version, no_client_cert, upstream_refused, ...).",
	"tlsd_bytes_total":                                       "Bytes forwarded, by endpoint and direction (in: client to upstream, out: upstream to client).",
	"tlsd_active_connections":                                "Open connections by endpoint, including those of previous generations still draining.",
	"tlsd_reloads_total":                                     "Configuration applies by result: applied, unchanged (no-op) or failed.",
	"tlsd_generation":                                        "The number of the configuration generation being served.",
	"tlsd_last_reload_success_timestamp_seconds":             "When the last configuration was applied (Unix time).",
	"tlsd_last_reload_successful":                            "1 when the last configuration load and apply worked (or changed nothing), 0 while the running generation serves on after a failed one.",
	"tlsd_tunnel_sessions":                                   "Edge: live tunnel sessions of agents.",
	"tlsd_tunnel_streams_total":                              "Edge: streams opened to agents, one per client connection.",
	"tlsd_tunnel_certificate_expiry_timestamp_seconds":       "NotAfter of this process's own tunnel certificate (edge: the one agents verify; agent: its client certificate), Unix time.",
	"tlsd_tunnel_agent_certificate_expiry_timestamp_seconds": "Edge: NotAfter of the client certificate each agent's sessions were opened with (the earliest of its sessions), Unix time.",
	"tlsd_endpoint_agent_up":                                 "Edge: 1 while the agent an endpoint names has a live tunnel session, else 0 (its clients are refused).",
	"tlsd_agent_connected":                                   "Agent: 1 while a tunnel session to an edge is up.",
	"tlsd_agent_sessions":                                    "Agent: tunnel sessions up, one per edge address (alert when below the number of edges).",
	"tlsd_agent_reconnects_total":                            "Agent: connection attempts to the edge after the first.",
	"tlsd_agent_streams_total":                               "Agent: streams received from the edge.",
	"tlsd_acme_orders_total":                                 "ACME certificate orders by issuer, challenge type (the one that validated; the last tried for a failed order) and result (ok or failed).",
	"tlsd_certificate_expiry_timestamp_seconds":              "NotAfter of the certificate tlsd presents for an endpoint (Unix time); alert on it minus time().",
	"tlsd_upstream_up":                                       "1 while an upstream entry of an endpoint may be dialed (its active check passes and no failed dial holds it back), else 0.",
	"tlsd_upstream_connections_total":                        "Connections dialed to an upstream entry (or refused before), by endpoint, upstream and result (ok or failed).",
	"tlsd_upstream_dial_duration_seconds":                    "Time to connect to an upstream, by endpoint and mode.",
	"tlsd_upstream_tls_handshake_duration_seconds":           "Time of the TLS handshake with a tls:// upstream, by endpoint and mode.",
	"tlsd_handshake_duration_seconds":                        "Time of the TLS handshakes tlsd ran with clients (edge termination), by endpoint and mode, failed ones included.",
	"tlsd_connection_duration_seconds":                       "How long connections lasted, from accept to close, by endpoint and mode (endpoint \"none\", mode \"none\": no endpoint took it).",
	"tlsd_state_store_up":                                    "1 while the last call to the shared state store (--state-store) reached it, else 0; absent without one.",
	"tlsd_config_info":                                       "Always 1; its labels say which configuration is served: revision (the roots' git commit or REVISION file, empty if none or they differ) and digest.",
	"tlsd_build_info":                                        "Always 1; its labels say which build of tlsd runs: version, revision, go_version.",
}

// NewRegistry is a registry with the Go runtime's and the process's standard metrics
// (go_goroutines, go_memstats_*, process_resident_memory_bytes, process_open_fds, ...)
// and tlsd_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	v := version.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tlsd_build_info", Help: MetricHelp["tlsd_build_info"],
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "go_version": v.GoVersion}})
	build.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), build)
	return reg
}
