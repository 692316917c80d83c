// Package statestore keeps what a fleet of edges shares — ACME accounts, certificates
// and keys, the internal CA, session-ticket secrets, and the locks that let one edge act
// for all — in Redis, behind certmagic's Storage interface (with its Locker). Values are
// sealed with AES-256-GCM when a key is given; the store's health is tracked from every
// call, so an edge keeps serving what it holds while Redis is away and says so.
package statestore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlsd/tlsd/certs"
)

// Options describe the store.
type Options struct {
	URL     string // redis://[user:pass@]host:port/db or rediss://...
	CAFile  string // PEM roots for rediss:// (else the system's)
	Prefix  string // of every Redis key, so several fleets share one Redis; default "tlsd"
	KeyFile string // a 32-byte key, base64: values are sealed with it
	LockTTL time.Duration
	Logger  *slog.Logger
}

// Default timings: a lock expires LockTTL after its holder stopped renewing it (the
// holder renews every third of it), and Lock polls a held lock this often.
const (
	DefaultLockTTL = 15 * time.Second
	lockPoll       = 250 * time.Millisecond
	callTimeout    = 3 * time.Second
)

// Store is a Redis-backed certmagic.Storage.
type Store struct {
	rdb     *redis.Client
	prefix  string
	seal    *sealer // nil: values are stored as given
	lockTTL time.Duration
	log     *slog.Logger
	where   string // the URL without its password, for logs and /status
	health  health
	locks   lockSet
}

// Open connects to the store and checks it answers.
func Open(ctx context.Context, o Options) (*Store, error) {
	opts, where, err := clientOptions(o)
	if err != nil {
		return nil, err
	}
	s := &Store{rdb: redis.NewClient(opts), prefix: o.Prefix, lockTTL: o.LockTTL, log: o.Logger, where: where}
	if s.prefix == "" {
		s.prefix = "tlsd"
	}
	if s.lockTTL <= 0 {
		s.lockTTL = DefaultLockTTL
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.locks.held = map[string]*heldLock{}
	if o.KeyFile != "" {
		if s.seal, err = loadSealer(o.KeyFile); err != nil {
			s.rdb.Close()
			return nil, err
		}
	}
	if err := s.Ping(ctx); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("state store %s: %w", where, err)
	}
	return s, nil
}

// clientOptions parses the URL and adds the CA for rediss://.
func clientOptions(o Options) (*redis.Options, string, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return nil, "", fmt.Errorf("state store %q: want redis://[user:pass@]host:port/db or rediss://[user:pass@]host:port/db", redact(o.URL))
	}
	opts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, "", fmt.Errorf("state store %s: %w", redact(o.URL), err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = callTimeout, callTimeout, callTimeout
	opts.MaxRetries = 1
	if o.CAFile != "" {
		if opts.TLSConfig == nil {
			return nil, "", fmt.Errorf("--state-store-ca is for rediss:// URLs; %s is not one", redact(o.URL))
		}
		pool := x509.NewCertPool()
		if err := certs.AddFiles(pool, o.CAFile); err != nil {
			return nil, "", fmt.Errorf("state store CA: %w", err)
		}
		opts.TLSConfig.RootCAs = pool
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return opts, redact(o.URL), nil
}

// redact drops the password of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Where is the store's URL without its password.
func (s *Store) Where() string { return s.where }

// Ping checks the store answers, and records the result in its health.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return s.note(s.rdb.Ping(ctx).Err())
}

// Close ends the locks' renewals and the connections.
func (s *Store) Close() error {
	s.locks.releaseAll()
	return s.rdb.Close()
}

func (s *Store) key(kind, name string) string { return s.prefix + ":" + kind + ":" + name }

// note records a call's outcome in the store's health: a missing key is an answer, any
// other error means the store could not be used.
func (s *Store) note(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		s.health.set(true, "", s.log, s.where)
		return err
	}
	s.health.set(false, err.Error(), s.log, s.where)
	return err
}

// Health says whether the last call reached the store.
type Health struct {
	Up        bool
	Since     time.Time // of the current state
	LastError string
}

// Health is the store's state as the last call found it.
func (s *Store) Health() Health { return s.health.get() }

type health struct {
	mu    sync.Mutex // guards the following fields
	known bool
	h     Health
}

func (h *health) set(up bool, errText string, log *slog.Logger, where string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.known && h.h.Up == up {
		if !up {
			h.h.LastError = errText
		}
		return
	}
	switch {
	case !up:
		log.Warn("state store unreachable: serving what this process holds; renewals retry", "store", where, "error", errText)
	case h.known:
		log.Info("state store reachable again", "store", where)
	}
	h.known, h.h = true, Health{Up: up, Since: time.Now(), LastError: errText}
}

func (h *health) get() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h
}

// readKeyFile reads a base64 key of n bytes.
func readKeyFile(path string, n int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("state store key: %w", err)
	}
	key, err := decodeBase64(strings.TrimSpace(string(data)))
	if err != nil || len(key) != n {
		return nil, fmt.Errorf("state store key %s: want %d random bytes in base64 (openssl rand -base64 %d)", path, n, n)
	}
	return key, nil
}

// RouteDriverLog sends the Redis client's own messages (a pool's failed dials, ...) to
// log at debug level, instead of its default of printing them to stderr: the store's
// health already says, once, when it cannot be reached. It sets the client library's
// process-wide logger, so a process calls it once, before Open.
func RouteDriverLog(log *slog.Logger) { redis.SetLogger(driverLog{log}) }

type driverLog struct{ log *slog.Logger }

func (d driverLog) Printf(_ context.Context, format string, v ...any) {
	d.log.Debug("redis client: " + fmt.Sprintf(format, v...))
}
