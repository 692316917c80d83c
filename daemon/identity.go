package daemon

import (
	"log/slog"
	"sync"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/watch"
)

// identity is the configuration a daemon serves, as /status, the page, the metrics and
// the log name it: its digest and the revision of its roots.
type identity struct {
	mu  sync.Mutex // guards cur
	cur *admin.ConfigStatus
}

// identify reads what cfg is: its digest, and the revision each root is at (git runs
// here: call it outside the daemon's lock).
func identify(cfg *schema.Config) admin.ConfigStatus {
	revs := watch.Revisions(cfg.Roots)
	id := admin.ConfigStatus{Digest: watch.Digest(cfg), Roots: make([]admin.RootRevision, 0, len(revs))}
	for _, r := range revs {
		id.Roots = append(id.Roots, admin.RootRevision{Path: r.Path, Revision: r.Revision, Dirty: r.Dirty, Source: r.Source})
	}
	id.Revision, id.Dirty = watch.Overall(revs)
	return id
}

// revisionOf is the revision of running's roots (the paths every load reads), for an
// attempt that loaded nothing; "" before the first configuration.
func revisionOf(running *schema.Config) string {
	if running == nil {
		return ""
	}
	rev, _ := watch.Overall(watch.Revisions(running.Roots))
	return rev
}

// served records id as the configuration now served, applied as generation gen, and
// logs it when it is not the one served before.
func (s *identity) served(log *slog.Logger, id admin.ConfigStatus, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur
	if prev != nil && prev.Revision == id.Revision && prev.Digest == id.Digest && prev.Dirty == id.Dirty {
		return
	}
	id.AppliedAt = time.Now()
	s.cur = &id
	log.Info("serving configuration", "generation", gen, "revision", id.Revision, "dirty", id.Dirty, "digest", id.Digest)
}

// get is the configuration served, nil before the first.
func (s *identity) get() *admin.ConfigStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	c := *s.cur
	return &c
}
