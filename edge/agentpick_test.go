package edge

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tlsd/tlsd/tunnel"
)

// pipeSession is a session over an in-memory pipe; with answer, the far end runs yamux
// (it answers pings), else nothing ever reads it.
func pipeSession(t *testing.T, name string, answer bool) *session {
	t.Helper()
	near, far := net.Pipe()
	mux, err := yamux.Client(near, tunnel.MuxConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close(); far.Close() })
	if answer {
		srv, err := yamux.Server(far, tunnel.MuxConfig(0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	return &session{name: name, addr: name, mux: mux}
}

// TestPickPrefersAnsweringSessions: a session that answered comes before an untried
// one, which comes before a suspect; within a rank, sessions take turns.
func TestPickPrefersAnsweringSessions(t *testing.T) {
	p := NewAgentPool(slog.New(slog.NewTextHandler(io.Discard, nil)))
	suspect, untried, a1, a2 := pipeSession(t, "suspect", true), pipeSession(t, "untried", true), pipeSession(t, "a1", true), pipeSession(t, "a2", true)
	suspect.unanswered.Store(1)
	a1.answered.Store(true)
	a2.answered.Store(true)
	p.sessions["agent"] = []*session{suspect, untried, a1, a2}
	seen := map[string]int{}
	for range 4 {
		seen[p.pick("agent", nil).name]++
	}
	if seen["a1"] != 2 || seen["a2"] != 2 {
		t.Errorf("picks %v: want the two answering sessions in turn", seen)
	}
	skip := map[*session]bool{a1: true, a2: true}
	if got := p.pick("agent", skip); got != untried {
		t.Errorf("without the answering ones: %s, want the untried one", got.name)
	}
	skip[untried] = true
	if got := p.pick("agent", skip); got != suspect {
		t.Errorf("last: %s, want the suspect", got.name)
	}
}

// TestProbe: a session whose agent answers pings passes; one whose far end reads
// nothing fails within the timeout, and a second probe does not pile onto the first.
func TestProbe(t *testing.T) {
	if !pipeSession(t, "live", true).probe(time.Second) {
		t.Error("a live session failed its probe")
	}
	dead := pipeSession(t, "dead", false)
	start := time.Now()
	if dead.probe(50 * time.Millisecond) {
		t.Error("a session nobody reads passed its probe")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the probe took %s", took)
	}
	if dead.probe(time.Second) {
		t.Error("a probe while one is in flight passed")
	}
}
