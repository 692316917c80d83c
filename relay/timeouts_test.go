package relay

import (
	"testing"
	"time"
)

func TestTimeoutVerdict(t *testing.T) {
	s := time.Second
	cases := []struct {
		name       string
		t          Timeouts
		age, idle  time.Duration
		half, know bool
		code       string
		wait       time.Duration
	}{
		{"none", Timeouts{}, time.Hour, time.Hour, true, true, "", time.Hour},
		{"lifetime over", Timeouts{MaxLifetime: 10 * s}, 10 * s, 0, false, true, "max_lifetime", 0},
		{"lifetime ahead", Timeouts{MaxLifetime: 10 * s}, 4 * s, 0, false, true, "", 6 * s},
		{"idle over", Timeouts{Idle: 5 * s}, time.Hour, 5 * s, false, true, "idle", 0},
		{"idle ahead", Timeouts{Idle: 5 * s}, time.Hour, 2 * s, false, true, "", 3 * s},
		{"idle unknown", Timeouts{Idle: 5 * s}, time.Hour, 0, false, false, "", time.Hour},
		{"half-closed and silent", Timeouts{HalfClose: 4 * s}, time.Hour, 4 * s, true, true, "half_close", 0},
		{"half-closed, still talking", Timeouts{HalfClose: 4 * s}, time.Hour, 0, true, true, "", 4 * s},
		{"open both ways, silent", Timeouts{HalfClose: 4 * s}, time.Hour, time.Hour, false, true, "", s},
		{"a sweep at most each second", Timeouts{Idle: 5 * s}, 0, 4900 * time.Millisecond, false, true, "", s},
	}
	for _, c := range cases {
		code, _, wait := c.t.Verdict(c.age, c.idle, c.half, c.know)
		if code != c.code || (code == "" && wait != c.wait) {
			t.Errorf("%s: %q, wait %s; want %q, %s", c.name, code, wait, c.code, c.wait)
		}
	}
}
