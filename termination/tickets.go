package termination

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// Session ticket keys rotate every TicketRotation and are honoured for TicketKeyCount
// rotations, so a ticket resumes for a few hours at most (crypto/tls's own keys live
// 7 days, which scanners flag). The lifetime a TLS 1.3 NewSessionTicket advertises stays
// crypto/tls's fixed maxSessionTicketLifetime (7 days, handshake_server_tls13.go): no
// Config field sets it, and the message is encrypted, so nothing outside can rewrite it.
const (
	TicketRotation = time.Hour
	TicketKeyCount = 4
)

const (
	keyNameLen = 16
	nonceLen   = 12
)

// ticketKeys seal the session tickets of one tls.Config, so a ticket from one endpoint
// never resumes on another. Rotation happens on use, against the clock: no goroutine
// has to run for keys to age, so no daemon can forget to start one.
type ticketKeys struct {
	now    func() time.Time
	shared SharedTickets // nil: only keys of its own
	scope  string        // what the shared secrets are derived for

	mu      sync.Mutex  // guards the following fields
	keys    []ticketKey // newest first
	derived map[[keyNameLen]byte]cipher.AEAD
}

// TicketSecret is one of a fleet's session-ticket secrets: it seals new tickets from
// ActiveAt (published ahead, so every process has it before any seals with it) and opens
// them for TicketKeyCount rotations after.
type TicketSecret struct {
	Name     [keyNameLen]byte
	Secret   [32]byte
	ActiveAt time.Time
}

// SharedTickets hands out a fleet's ticket secrets, newest first.
type SharedTickets interface {
	TicketSecrets() []TicketSecret
}

// Retired reports whether a secret active since activeAt no longer opens tickets.
func Retired(activeAt, now time.Time) bool { return now.Sub(activeAt) >= TicketKeyCount*TicketRotation }

type ticketKey struct {
	name    [keyNameLen]byte
	aead    cipher.AEAD
	created time.Time
}

func newTicketKeys(now func() time.Time) *ticketKeys {
	if now == nil {
		now = time.Now
	}
	return &ticketKeys{now: now}
}

// install makes cfg seal and open its tickets with these keys.
func (t *ticketKeys) install(cfg *tls.Config) {
	cfg.WrapSession = t.wrap
	cfg.UnwrapSession = t.unwrap
}

// wrap seals a session: key name, nonce, then AES-GCM over the session state, with the
// key name as additional data.
func (t *ticketKeys) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	plain, err := ss.Bytes()
	if err != nil {
		return nil, fmt.Errorf("session ticket: %w", err)
	}
	k, err := t.current()
	if err != nil {
		return nil, err
	}
	out := make([]byte, keyNameLen+nonceLen, keyNameLen+nonceLen+len(plain)+k.aead.Overhead())
	copy(out, k.name[:])
	rand.Read(out[keyNameLen:])
	return k.aead.Seal(out, out[keyNameLen:], plain, out[:keyNameLen]), nil
}

// unwrap opens a ticket. One it cannot open (an unknown or retired key, a forgery) is
// ignored: the client gets a full handshake, not an error.
func (t *ticketKeys) unwrap(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(identity) < keyNameLen+nonceLen {
		return nil, nil
	}
	k, ok := t.honoured(identity[:keyNameLen])
	if !ok {
		return nil, nil
	}
	plain, err := k.aead.Open(nil, identity[keyNameLen:keyNameLen+nonceLen], identity[keyNameLen+nonceLen:], identity[:keyNameLen])
	if err != nil {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(plain)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}

// current is the key that seals new tickets: the newest active shared secret, else a key
// of its own, made anew once the newest is a rotation old.
func (t *ticketKeys) current() (ticketKey, error) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.sharedLocked(now, nil); ok {
		return k, nil
	}
	t.retireLocked(now)
	if len(t.keys) > 0 && now.Sub(t.keys[0].created) < TicketRotation {
		return t.keys[0], nil
	}
	k, err := newTicketKey(now)
	if err != nil {
		return ticketKey{}, err
	}
	t.keys = append([]ticketKey{k}, t.keys...)
	return k, nil
}

// honoured finds the key a ticket names, if it has not retired.
func (t *ticketKeys) honoured(name []byte) (ticketKey, bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.sharedLocked(now, name); ok {
		return k, true
	}
	t.retireLocked(now)
	for _, k := range t.keys {
		if subtle.ConstantTimeCompare(k.name[:], name) == 1 {
			return k, true
		}
	}
	return ticketKey{}, false
}

// sharedLocked finds a shared secret in force: the one named name, or with name nil the
// newest one already active; its key is derived for this scope, so a ticket of one
// endpoint never opens on another.
func (t *ticketKeys) sharedLocked(now time.Time, name []byte) (ticketKey, bool) {
	if t.shared == nil {
		return ticketKey{}, false
	}
	for _, s := range t.shared.TicketSecrets() {
		if Retired(s.ActiveAt, now) || (name == nil && now.Before(s.ActiveAt)) {
			continue
		}
		if name != nil && subtle.ConstantTimeCompare(s.Name[:], name) != 1 {
			continue
		}
		aead, err := t.deriveLocked(s)
		if err != nil {
			return ticketKey{}, false
		}
		return ticketKey{name: s.Name, aead: aead, created: s.ActiveAt}, true
	}
	return ticketKey{}, false
}

func (t *ticketKeys) deriveLocked(s TicketSecret) (cipher.AEAD, error) {
	if a := t.derived[s.Name]; a != nil {
		return a, nil
	}
	key, err := hkdf.Key(sha256.New, s.Secret[:], s.Name[:], "tlsd session ticket "+t.scope, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if t.derived == nil || len(t.derived) > 4*TicketKeyCount {
		t.derived = map[[keyNameLen]byte]cipher.AEAD{}
	}
	t.derived[s.Name] = aead
	return aead, nil
}

// retireLocked forgets keys older than TicketKeyCount rotations.
func (t *ticketKeys) retireLocked(now time.Time) {
	for len(t.keys) > 0 && now.Sub(t.keys[len(t.keys)-1].created) >= TicketKeyCount*TicketRotation {
		t.keys = t.keys[:len(t.keys)-1]
	}
}

func newTicketKey(now time.Time) (ticketKey, error) {
	var secret [32]byte
	k := ticketKey{created: now}
	rand.Read(secret[:])
	rand.Read(k.name[:])
	block, err := aes.NewCipher(secret[:])
	if err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	return k, nil
}
