// Package agent is the back of the data plane: termination at the agent, dialing
// upstreams, the PROXY protocol header, and in a split deployment the tunnel client. Like
// edge, it never reads configuration files: it must not import schema, reconcile or runtime.
package agent
