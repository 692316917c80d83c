// Package arch holds the test that keeps tlsd's dependency arrows pointing one way:
// cmd/tlsd -> runtime -> {reconcile -> schema, edge, agent}.
package arch
