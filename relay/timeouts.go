package relay

import (
	"fmt"
	"time"
)

// Timeouts close a route's open connections; zero means none.
type Timeouts struct {
	Idle        time.Duration // no byte either way for this long
	MaxLifetime time.Duration // open this long
	HalfClose   time.Duration // silent this long once one side has ended its writes
}

// Any says whether a timeout is set.
func (t Timeouts) Any() bool { return t.Idle > 0 || t.MaxLifetime > 0 || t.HalfClose > 0 }

// SweepEvery is how often open connections are looked at: timeouts act within a second.
const SweepEvery = time.Second

// Verdict decides a connection's fate from its age and the kernel's view of its socket
// (known is false where the system cannot tell): a code and reason when a timeout has
// passed, else how long until the next look is worth it.
func (t Timeouts) Verdict(age, idle time.Duration, halfClosed, known bool) (code, reason string, wait time.Duration) {
	switch {
	case t.MaxLifetime > 0 && age >= t.MaxLifetime:
		return "max_lifetime", fmt.Sprintf("open for %s, the endpoint's max_lifetime", t.MaxLifetime), 0
	case known && t.Idle > 0 && idle >= t.Idle:
		return "idle", fmt.Sprintf("idle for %s", t.Idle), 0
	case known && halfClosed && t.HalfClose > 0 && idle >= t.HalfClose:
		return "half_close", fmt.Sprintf("half-closed and silent for %s", t.HalfClose), 0
	}
	wait = time.Hour
	if t.MaxLifetime > 0 {
		wait = min(wait, t.MaxLifetime-age)
	}
	if known && t.Idle > 0 {
		wait = min(wait, t.Idle-idle)
	}
	if known && t.HalfClose > 0 {
		if halfClosed {
			wait = min(wait, t.HalfClose-idle)
		} else {
			wait = min(wait, t.HalfClose/4) // until a half-close shows
		}
	}
	return "", "", max(wait, SweepEvery)
}
