// Package upstream is the back of the data plane: dialing an endpoint's upstreams (TCP,
// unix sockets, TLS), pools with their load balancing and health checks, the PROXY
// protocol header, and termination where the back runs (at the agent). Like edge, it
// never reads configuration files: it must not import schema, reconcile or daemon.
package upstream
