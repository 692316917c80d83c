package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/tlsd/tlsd/statestore"
)

// storeFlags are --state-store and its companions (tlsd run, tlsd edge, tlsd ca).
type storeFlags struct {
	url, ca, prefix, key string
}

func addStoreFlags(fl *pflag.FlagSet, f *storeFlags) {
	fl.StringVar(&f.url, "state-store", "", "`URL` of the fleet's shared state, redis://[user:pass@]host:port/db or rediss://...: ACME accounts, certificates, locks, the internal CA and session-ticket secrets live there instead of --state-dir")
	fl.StringVar(&f.ca, "state-store-ca", "", "PEM `FILE` of the CAs that sign a rediss:// server's certificate (default: the system's)")
	fl.StringVar(&f.prefix, "state-store-prefix", "tlsd", "prefix of every Redis key, so several fleets can share one Redis")
	fl.StringVar(&f.key, "state-store-key", "", "`FILE` holding a 32-byte key in base64 (openssl rand -base64 32): every value is stored sealed with it (AES-256-GCM); every edge of the fleet needs the same one")
}

// open connects to the store; nil when --state-store is not given.
func (f storeFlags) open(ctx context.Context, log *slog.Logger) (*statestore.Store, error) {
	if f.url == "" {
		if f.ca != "" || f.key != "" {
			return nil, &exitError{exitUsage, fmt.Errorf("--state-store-ca and --state-store-key need --state-store")}
		}
		return nil, nil
	}
	statestore.RouteDriverLog(log)
	st, err := statestore.Open(ctx, statestore.Options{URL: f.url, CAFile: f.ca, Prefix: f.prefix, KeyFile: f.key, Logger: log})
	if err != nil {
		return nil, &exitError{exitUsage, fmt.Errorf("--state-store: %w", err)}
	}
	log.Info("state store: ACME state, the internal CA and session-ticket secrets are shared through it", "store", st.Where(),
		"prefix", f.prefix, "sealed", f.key != "")
	return st, nil
}
