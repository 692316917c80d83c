// Package edge is the front of the data plane: listeners, the ClientHello peek, SNI route
// lookup, passthrough or TLS termination, and forwarding. It takes plain route tables and
// never reads configuration files: it must not import schema, reconcile or runtime.
package edge
