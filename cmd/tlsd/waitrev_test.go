package main

import (
	"testing"

	"github.com/tlsd/tlsd/admin"
)

func TestRevisionMatching(t *testing.T) {
	for _, c := range []struct {
		rev string
		ok  bool
	}{{"abc1234", true}, {"ABC1234def", true}, {"abc12", false}, {"", false}, {"build-42", true}} {
		if err := checkRevision(c.rev); (err == nil) != c.ok {
			t.Errorf("checkRevision(%q) = %v", c.rev, err)
		}
	}
	w := revisionWait{rev: "abc1234"}
	for _, c := range []struct {
		name string
		st   admin.Status
		want adminState
	}{
		{"commit prefix served", admin.Status{Config: &admin.ConfigStatus{Revision: "abc1234ffff", Digest: "00"}}, serving},
		{"digest prefix served", admin.Status{Config: &admin.ConfigStatus{Revision: "1111111", Digest: "ABC1234aa"}}, serving},
		{"another revision", admin.Status{Config: &admin.ConfigStatus{Revision: "1111111", Digest: "22"}, LastAttempt: admin.Attempt{OK: true}}, waiting},
		{"its reload failed", admin.Status{Config: &admin.ConfigStatus{Revision: "1111111"}, LastAttempt: admin.Attempt{Revision: "abc1234ffff"}}, refused},
		{"another reload failed", admin.Status{Config: &admin.ConfigStatus{Revision: "1111111"}, LastAttempt: admin.Attempt{Revision: "9999999"}}, waiting},
		{"nothing served yet", admin.Status{}, waiting},
	} {
		if got := w.judge(c.st); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if (revisionWait{rev: "build-42"}).judge(admin.Status{Config: &admin.ConfigStatus{Revision: "build-421"}}) != waiting {
		t.Error("a REVISION line matched by prefix: it must match whole")
	}
}
