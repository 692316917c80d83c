// Package edge is the front of the data plane: listeners and the accept loop, the
// ClientHello peek, SNI route tables, the steps every connection takes (peek, route,
// terminate at the edge, hand off), and the tunnel's edge side: the sessions of agents,
// pooled by name, and the handler that sends an endpoint's connections through them. It
// takes plain route tables and never reads configuration files: it must not import
// schema, reconcile or runtime.
package edge
