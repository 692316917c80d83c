// Package arch holds the tests that keep tlsd's layout: every package's allowed imports
// (cmd/tlsd -> runtime -> {reconcile -> schema, edge, agent -> {relay, termination,
// tunnel}}), the dependencies the data plane must never have, and a doc comment per
// package.
package arch
