// Package arch holds the tests that keep tlsd's layout: every package's allowed imports
// (cmd/tlsd -> daemon -> {watch, admin, reconcile -> schema, edge, upstream, tunnel/...}
// -> {relay, termination, tunnel}), the dependencies the data plane must never have, a
// doc comment per package, and ARCHITECTURE.md naming every package.
package arch
