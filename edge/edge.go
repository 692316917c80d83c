// Package edge is the front of the data plane: listeners and the accept loop, the PROXY
// header, the ClientHello peek and the alerts for hellos it refuses, SNI route tables,
// access checks, limits, the timeouts sweep, the steps every connection takes (peek,
// route, terminate at the edge, hand off to the route's handler), and the HTTP listener
// (ACME HTTP-01 answers and redirects). It takes plain route tables and never reads
// configuration files: it must not import schema, reconcile or daemon; the tunnel's
// handler is plugged into its routes by the daemon.
package edge
