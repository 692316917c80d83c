// Command demo-upstream is the upstream of `make run`: a small HTTP service answering in
// plaintext on one listener per termination mode (tlsd terminated at the edge, or at the
// agent) and over its own TLS (for the zero-knowledge passthrough endpoint), each saying
// which way the request came.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

func main() {
	plain := flag.String("plain", "127.0.0.1:9001", "address of the plaintext HTTP listener for the edge-terminated endpoint")
	agentPlain := flag.String("agent-plain", "127.0.0.1:9003", "address of the plaintext HTTP listener for the agent-terminated endpoint")
	secure := flag.String("tls", "127.0.0.1:9002", "address of the HTTPS listener")
	name := flag.String("name", "passthrough.localhost", "server name of the HTTPS listener's certificate")
	dir := flag.String("state-dir", ".tlsd/demo-upstream", "where to write the HTTPS listener's CA certificate")
	flag.Parse()
	if err := run(*plain, *agentPlain, *secure, *name, *dir); err != nil {
		log.Fatal(err)
	}
}

func run(plainAddr, agentAddr, tlsAddr, name, dir string) error {
	ca, err := testpki.NewCA("demo upstream CA (DEMO ONLY)", time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	leaf, err := ca.Issue(testpki.Options{CommonName: name, DNSNames: []string{name}})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.WriteFiles(caFile, ""); err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	if err != nil {
		return err
	}
	plainSrv := &http.Server{Addr: plainAddr, Handler: hello("plaintext: tlsd terminated TLS at the edge (its internal issuer's certificate) and forwarded the request"),
		ReadHeaderTimeout: 10 * time.Second}
	agentSrv := &http.Server{Addr: agentAddr, Handler: hello("plaintext: the agent terminated TLS with the certificate it holds and forwarded the request"),
		ReadHeaderTimeout: 10 * time.Second}
	tlsSrv := &http.Server{Addr: tlsAddr, Handler: hello("TLS that this upstream terminated itself: tlsd passed the encrypted bytes through"),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 3)
	go func() { errs <- plainSrv.ListenAndServe() }()
	go func() { errs <- agentSrv.ListenAndServe() }()
	go func() { errs <- tlsSrv.ListenAndServeTLS("", "") }()
	log.Printf("demo upstream: plaintext HTTP on %s (edge) and %s (agent), HTTPS for %s on %s (its CA: %s)", plainAddr, agentAddr, name, tlsAddr, caFile)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(plainSrv.Shutdown(sctx), agentSrv.Shutdown(sctx), tlsSrv.Shutdown(sctx))
}

func hello(how string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "hello from the demo upstream\nHost: %s\nreached over: %s\nconnection from: %s\n", r.Host, how, host)
	})
}
