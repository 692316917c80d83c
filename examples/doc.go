// Package examples holds ready-to-run endpoint directories (quickstart/, production/).
// Its tests validate every example and every YAML snippet of the README, so the
// documentation cannot drift from what tlsd accepts.
package examples
