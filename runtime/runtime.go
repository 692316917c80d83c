// Package runtime is the live tlsd process: the directory watcher, the reconcile loop,
// building and atomically switching generations, connection draining, the admin API and
// signal handling. It wires schema and reconcile (desired state) to edge and agent (the
// data plane).
//
// The name shadows the standard library's runtime; files that need both import the
// standard one as goruntime.
package runtime
