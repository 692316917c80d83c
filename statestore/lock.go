package statestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A lock is P:lock:NAME holding its holder's random token, set only if absent and
// expiring after the lock TTL. The holder renews it every third of the TTL while it
// works, so a live holder keeps it however long an ACME order takes, and one that died
// releases it within a TTL. Renewal and release compare the token first (one script),
// so nobody extends or deletes a lock another process has taken since.

var (
	renewScript  = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`)
	unlockScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)
)

type lockSet struct {
	mu   sync.Mutex // guards held
	held map[string]*heldLock
}

type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

// Lock takes the named lock, waiting while another process holds it, until ctx ends.
func (s *Store) Lock(ctx context.Context, name string) error {
	token := newToken()
	for {
		ok, err := s.tryLock(ctx, name, token)
		if err != nil {
			return fmt.Errorf("state store: lock %s: %w", name, err)
		}
		if ok {
			s.keepLock(name, token)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("state store: lock %s: %w", name, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

func (s *Store) tryLock(ctx context.Context, name, token string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ok, err := s.rdb.SetNX(cctx, s.key("lock", name), token, s.lockTTL).Result()
	return ok, s.note(err)
}

// keepLock renews the lock until Unlock (or Close) stops it.
func (s *Store) keepLock(name, token string) {
	ctx, stop := context.WithCancel(context.Background())
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.locks.mu.Lock()
	s.locks.held[name] = h
	s.locks.mu.Unlock()
	go func() {
		defer close(h.done)
		t := time.NewTicker(s.lockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.renew(ctx, name, token)
			}
		}
	}()
}

func (s *Store) renew(ctx context.Context, name, token string) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := renewScript.Run(cctx, s.rdb, []string{s.key("lock", name)}, token, s.lockTTL.Milliseconds()).Int()
	if s.note(err); err == nil && n == 0 {
		s.log.Warn("state store lock lost: it expired while this process held it (the store was away longer than the lock TTL)",
			"lock", name, "ttl", s.lockTTL)
	}
}

// Unlock releases a lock this process holds.
func (s *Store) Unlock(ctx context.Context, name string) error {
	s.locks.mu.Lock()
	h := s.locks.held[name]
	delete(s.locks.held, name)
	s.locks.mu.Unlock()
	if h == nil {
		return fmt.Errorf("state store: unlock %s: not held by this process", name)
	}
	h.stop()
	<-h.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	err := unlockScript.Run(ctx, s.rdb, []string{s.key("lock", name)}, h.token).Err()
	if s.note(err) != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("state store: unlock %s (it expires within %s): %w", name, s.lockTTL, err)
	}
	return nil
}

// releaseAll stops renewing every held lock (they expire, or Unlock deletes them).
func (l *lockSet) releaseAll() {
	l.mu.Lock()
	held := l.held
	l.held = map[string]*heldLock{}
	l.mu.Unlock()
	for _, h := range held {
		h.stop()
		<-h.done
	}
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
