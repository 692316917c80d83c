// Package daemon is the live tlsd process: generations (the one builder turning schema
// endpoints into data-plane values, binding listeners, the atomic switch), connection
// draining, the process's lifecycle (start, signals, shutdown, sd_notify) and the
// upgrade hand-over. tlsd run, tlsd edge and tlsd agent are its three roles. It wires
// watch (reloads), schema and reconcile (desired state) to edge and agent (the data
// plane), and renders its state through admin.
package daemon
