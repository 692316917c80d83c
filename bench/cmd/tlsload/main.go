// Command tlsload is tlsd's load client, useful against any TLS address: bulk
// throughput (passthrough or over TLS), full or resumed TLS handshakes, new passthrough
// connections, or idle connections held open.
//
//	tlsload -mode handshake -addr 127.0.0.1:8443 -sni term.test -insecure -duration 5s
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/tlsd/tlsd/bench"
	"github.com/tlsd/tlsd/certs"
)

func main() {
	mode := flag.String("mode", "handshake", "bulk (passthrough: ClientHello then raw bytes), tlsbulk, handshake, resume, connrate or idle")
	addr := flag.String("addr", "127.0.0.1:8443", "address to load")
	sni := flag.String("sni", "localhost", "server name to send")
	caFile := flag.String("ca", "", "PEM roots to verify the server with (default: the system's)")
	insecure := flag.Bool("insecure", false, "do not verify the server's certificate")
	conns := flag.Int("c", 8, "connections or workers")
	dur := flag.Duration("duration", 5*time.Second, "how long to run")
	flag.Parse()
	var roots *x509.CertPool
	if *caFile != "" {
		roots = x509.NewCertPool()
		if err := certs.AddFiles(roots, *caFile); err != nil {
			log.Fatal(err)
		}
	}
	cfg := bench.ClientConfig(*sni, roots)
	cfg.InsecureSkipVerify = *insecure
	hello, err := bench.HelloBytes(*sni)
	if err != nil {
		log.Fatal(err)
	}
	switch *mode {
	case "bulk", "tlsbulk":
		c := cfg
		if *mode == "bulk" {
			c = nil
		}
		n, err := bench.Bulk(*addr, hello, c, *conns, *dur)
		report(err)
		fmt.Printf("%.2f Gbit/s (%d bytes in %s over %d connections)\n", float64(n)*8/1e9/dur.Seconds(), n, *dur, *conns)
	case "handshake", "resume":
		n, neg, err := bench.Handshakes(*addr, cfg, *mode == "resume", *conns, *dur)
		report(err)
		fmt.Printf("%.0f handshakes/s (%d in %s, %d workers; %s)\n", float64(n)/dur.Seconds(), n, *dur, *conns, neg)
	case "connrate":
		n, err := bench.ConnRate(*addr, hello, *conns, *dur)
		report(err)
		fmt.Printf("%.0f connections/s (%d in %s, %d workers)\n", float64(n)/dur.Seconds(), n, *dur, *conns)
	case "idle":
		closeAll, err := bench.OpenIdle(*addr, hello, cfg, *conns)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d connections open; Ctrl-C closes them\n", *conns)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
		closeAll()
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
}

func report(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsload: stopped early:", err)
	}
}
