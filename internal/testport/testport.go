// Package testport gives tests a loopback address to name before anything listens on it
// (a child process's --listen, an address where nothing answers). It picks a port below
// the kernel's ephemeral range, so no outgoing connection's source port and no ":0"
// listener of a test running beside it can take the port between the pick and its use.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Unused returns "127.0.0.1:PORT" for a port that was free a moment ago and lies outside
// the ephemeral range.
func Unused(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 200 {
		addr := "127.0.0.1:" + strconv.Itoa(low-1-rand.IntN(low-10000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if unknown).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 11000 {
		return 32768
	}
	return n
}
