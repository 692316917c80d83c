// Package reconcile computes what must change to go from the running configuration to the
// desired one: Diff(running, desired) -> Plan, an ordered list of actions with a
// human-readable String(). It is pure: no I/O and no goroutines. `tlsd plan` prints it.
//
// The diff itself arrives with hot reload; this package holds its place in the layout
// (cmd/tlsd -> runtime -> reconcile -> schema).
package reconcile
