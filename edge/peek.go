package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
)

// MaxClientHello bounds the bytes read while looking for the ClientHello. A post-quantum
// ClientHello is under 2 KiB; 64 KiB (the largest handshake message crypto/tls accepts)
// leaves room for large extensions without letting a client make tlsd buffer without
// limit.
const MaxClientHello = 64 << 10

var (
	// errHelloTooLarge is tlsd's own bound, not a protocol violation: internal_error is
	// what crypto/tls sends at its own size limit.
	errHelloTooLarge = &helloError{code: codeHelloTooLarge, alert: alertInternalError, msg: fmt.Sprintf("ClientHello larger than %d bytes", MaxClientHello)}
	errBusy          = errors.New("too many large ClientHellos in flight: the memory for them is spent")
)

// HelloBudget bounds, across listeners, the memory held by ClientHellos larger than the
// first buffer while they are read: half-sent 64 KiB hellos would otherwise cost about
// 120 kB each, without limit, for the handshake timeout. Its methods are safe on nil
// (no bound).
type HelloBudget struct {
	mu          sync.Mutex // guards used
	used, limit int
}

// DefaultHelloBudget is enough for 256 hellos of the largest size at once; ordinary
// hellos (under 4 KiB, post-quantum ones included) never draw on it.
const DefaultHelloBudget = 16 << 20

// NewHelloBudget makes a budget of limit bytes.
func NewHelloBudget(limit int) *HelloBudget { return &HelloBudget{limit: limit} }

func (b *HelloBudget) take(n int) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *HelloBudget) give(n int) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// peekBufs hold the bytes of ClientHellos being read. Nearly all fit in the first
// buffer; what the connection keeps is an exact copy of the bytes read.
var peekBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// peekWithin reads the client's ClientHello and returns what tlsd routes by with every
// byte read, which the caller must replay to whatever handles the connection next. It
// reads nothing past the bytes the client has sent with its hello, and allocates little:
// this runs for every connection. The caller sets the deadline. Memory beyond the first
// buffer comes from budget (nil: unbounded); a hello that finds the budget spent fails
// with errBusy. The hello begins with start, bytes already read (past a PROXY header),
// shorter than the first buffer.
func peekWithin(conn net.Conn, budget *HelloBudget, start []byte) (*tls.ClientHelloInfo, []byte, error) {
	bp := peekBufs.Get().(*[]byte)
	defer peekBufs.Put(bp)
	buf := append((*bp)[:0], start...)
	var taken int
	defer func() { budget.give(taken) }()
	for {
		hello, need, perr := parseClientHello(buf)
		if hello != nil {
			return hello, clone(buf), nil
		}
		if perr != nil {
			return nil, clone(buf), perr
		}
		if need > MaxClientHello {
			return nil, clone(buf), errHelloTooLarge
		}
		if need > cap(buf) {
			grown := min(max(need, 2*cap(buf)), MaxClientHello)
			if !budget.take(grown - taken) {
				return nil, clone(buf), errBusy
			}
			taken = grown
			buf = append(make([]byte, 0, grown), buf...)
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			return nil, clone(buf), err
		}
	}
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
