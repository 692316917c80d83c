package server

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

// TestPickPrefersAnsweringSessions: a first attempt takes answering and untried
// sessions in turn, a suspect last; a later attempt of a stream wants an answering one
// before an untried one.
func TestPickPrefersAnsweringSessions(t *testing.T) {
	p := NewAgentPool(slog.New(slog.NewTextHandler(io.Discard, nil)))
	suspect, untried, a1, a2 := pipeSession(t, "suspect", true), pipeSession(t, "untried", true), pipeSession(t, "a1", true), pipeSession(t, "a2", true)
	suspect.unanswered.Store(1)
	a1.answered.Store(true)
	a2.answered.Store(true)
	p.sessions["agent"] = []*session{suspect, untried, a1, a2}
	picks := func(proven bool, skip map[*session]bool) map[string]int {
		seen := map[string]int{}
		for range 6 {
			seen[p.pick("agent", skip, proven).name]++
		}
		return seen
	}
	if seen := picks(false, nil); seen["a1"] != 2 || seen["a2"] != 2 || seen["untried"] != 2 {
		t.Errorf("first attempts %v: want answering and untried sessions in turn", seen)
	}
	if seen := picks(true, map[*session]bool{a2: true}); seen["a1"] != 6 {
		t.Errorf("later attempts %v: want the answering session", seen)
	}
	if seen := picks(true, map[*session]bool{a1: true, a2: true}); seen["untried"] != 6 {
		t.Errorf("later attempts without answering sessions %v: want the untried one", seen)
	}
	if seen := picks(false, map[*session]bool{a1: true, a2: true, untried: true}); seen["suspect"] != 6 {
		t.Errorf("only a suspect left %v: want it", seen)
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
