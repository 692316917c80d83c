package schema

// Code describes one diagnostic code. Codes are stable: tools may match on them.
type Code struct {
	Name     string
	Severity Severity
	Meaning  string
}

// Codes lists every diagnostic code Load can report.
var Codes = []Code{
	{"yaml-syntax", SeverityError, "the file is not valid YAML"},
	{"duplicate-key", SeverityError, "a field is set twice in one mapping"},
	{"invalid-key", SeverityError, "a mapping key is not a plain word"},
	{"unsupported-yaml", SeverityError, "a YAML feature tlsd does not accept (merge keys)"},
	{"not-a-mapping", SeverityError, "a document is a list or a single value instead of a mapping"},
	{"document-too-large", SeverityError, "a document has more than 10,000 values or 64 levels, aliases expanded"},
	{"file-unreadable", SeverityError, "a configuration or referenced file cannot be read"},
	{"unknown-field", SeverityError, "a field the schema does not define (with a did-you-mean)"},
	{"missing-field", SeverityError, "a required field is absent"},
	{"wrong-type", SeverityError, "a value has the wrong type, e.g. min_version: 1.3 instead of \"1.3\""},
	{"invalid-value", SeverityError, "a value is not one of the allowed ones (apiVersion, kind, terminate_at, ...)"},
	{"empty-value", SeverityError, "a string or list that must not be empty is"},
	{"invalid-name", SeverityError, "a name, agent or issuer is not a DNS label"},
	{"invalid-domain", SeverityError, "domain is not a host name or a one-label wildcard"},
	{"invalid-listen", SeverityError, "listen is not host:port or :port"},
	{"invalid-upstream", SeverityError, "upstream is not host:port or unix:PATH"},
	{"invalid-url", SeverityError, "an ACME directory is not an https:// URL"},
	{"invalid-email", SeverityError, "an ACME email is not an email address"},
	{"duplicate-name", SeverityError, "two endpoints, or two issuers, have the same name"},
	{"duplicate-domain", SeverityError, "two endpoints serve the same domain on the same listener"},
	{"field-not-allowed", SeverityError, "a TLS setting the endpoint's terminate_at does not allow"},
	{"certificate-required", SeverityError, "an edge or agent endpoint with neither tls.certificate nor tls.issuer"},
	{"certificate-and-issuer", SeverityError, "an endpoint gives both tls.certificate and tls.issuer"},
	{"unknown-issuer", SeverityError, "tls.issuer names no Issuer document and is not \"internal\""},
	{"reserved-name", SeverityError, "an Issuer is named \"internal\", the built-in CA's name"},
	{"unused-issuer", SeverityWarning, "no endpoint uses this Issuer"},
	{"dns-required", SeverityError, "an Issuer offers dns-01 without acme.dns to publish the record"},
	{"dns-unused", SeverityWarning, "acme.dns is set but challenges does not list dns-01"},
	{"http-listen-required", SeverityWarning, "an Issuer offers http-01, which needs tlsd run|edge --http-listen (validate --http-listen says it is given)"},
	{"invalid-dns-setting", SeverityError, "rfc2136.server is not host:port, or tsig_key_name is not a DNS name"},
	{"invalid-secret", SeverityError, "a TSIG secret or EAB MAC key file does not hold base64"},
	{"not-executable", SeverityError, "the acme.dns.exec hook is not an executable file"},
	{"wildcard-needs-dns-01", SeverityError, "a wildcard domain names an ACME issuer that does not offer dns-01"},
	{"agent-issuer-needs-dns-01", SeverityError, "a terminate_at: agent endpoint names the internal issuer, or an ACME issuer without dns-01"},
	{"invalid-cidr", SeverityError, "an allow_cidrs or deny_cidrs entry is not a CIDR prefix or an IP address, is an IPv4-mapped prefix shorter than /96, or has an IPv6 zone"},
	{"unknown-ip-policy", SeverityError, "ip_restriction.policies names no IPPolicy document"},
	{"unused-ip-policy", SeverityWarning, "no endpoint uses this IPPolicy"},
	{"nothing-allowed", SeverityWarning, "the deny list covers every allowed range: the endpoint admits no one"},
	{"max-below-min", SeverityError, "tls.max_version is below tls.min_version"},
	{"alpn-reserved", SeverityError, "tls.alpn lists acme-tls/1, which ACME challenge validation uses"},
	{"client-cas-required", SeverityError, "mutual_tls verifies certificates (require-and-verify, request) but names no certificate_authorities"},
	{"allow-without-cas", SeverityError, "mutual_tls.allow without certificate_authorities to verify certificates against"},
	{"allow-unverified", SeverityError, "mutual_tls.allow with verification_strategy: require-any, which verifies nothing"},
	{"request-unseen", SeverityWarning, "verification_strategy: request without upstream_proxy_protocol: v2: the upstream cannot tell verified clients from others"},
	{"invalid-limit", SeverityError, "a limit is zero or negative (leave it out for no limit)"},
	{"invalid-rate", SeverityError, "rate_per_ip is not N/s or N/m"},
	{"invalid-duration", SeverityError, "a timeouts value or propagation_timeout is not a positive Go duration"},
	{"per-ip-above-max", SeverityWarning, "max_connections_per_ip is above max_connections"},
	{"half-close-above-idle", SeverityWarning, "timeouts.half_close is longer than timeouts.idle"},
	{"fallback-not-allowed", SeverityError, "fallback on an agent endpoint, or on an edge endpoint without tls.certificate"},
	{"duplicate-fallback", SeverityError, "a second fallback endpoint on one listener"},
	{"upstream-conflict", SeverityError, "an endpoint gives both upstream and upstreams"},
	{"duplicate-upstream", SeverityError, "an entry appears twice in upstreams"},
	{"mixed-schemes", SeverityError, "a pool mixes tls:// and plaintext entries"},
	{"tls-upstream-passthrough", SeverityError, "a tls:// upstream on a terminate_at: upstream endpoint (it would encrypt twice)"},
	{"upstream-tls-unused", SeverityError, "upstream_tls without a tls:// upstream"},
	{"insecure-skip-verify", SeverityWarning, "upstream_tls.insecure_skip_verify: the upstream's certificate is not checked"},
	{"health-check-plaintext", SeverityError, "health_check.type: tls against plaintext upstreams"},
	{"file-missing", SeverityError, "a referenced certificate, key or CA file does not exist"},
	{"invalid-pem", SeverityError, "a referenced file does not hold the PEM it should"},
	{"key-mismatch", SeverityError, "the private key is not the certificate's"},
	{"certificate-name-mismatch", SeverityError, "the certificate does not cover the endpoint's domain"},
	{"certificate-expired", SeverityError, "the certificate has expired"},
	{"certificate-not-yet-valid", SeverityError, "the certificate is not valid yet"},
	{"certificate-expiring", SeverityWarning, "the certificate expires within 14 days"},
	{"not-a-ca", SeverityError, "a client CA file holds a certificate that is not a CA"},
	{"key-permissions", SeverityWarning, "a private key or secret file is readable by group or others"},
	{"empty-file", SeverityWarning, "a configuration file holds no document (tlsd run waits for a file being written)"},
	{"schema", SeverityError, "any other schema violation"},
}

func isKnownCode(name string) bool {
	for _, c := range Codes {
		if c.Name == name {
			return true
		}
	}
	return false
}
