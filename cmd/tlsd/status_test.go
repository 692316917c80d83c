package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
)

// TestCertificateText: the status table's certificate column says whose it is, how long
// it lasts, how ACME validated it, and for a failed order why and when the next try is.
func TestCertificateText(t *testing.T) {
	expiry := time.Now().Add(50 * time.Hour)
	for _, c := range []struct {
		cert admin.CertificateStatus
		want []string
	}{
		{admin.CertificateStatus{Issuer: "tlsd internal CA", NotAfter: expiry}, []string{"tlsd internal CA, expires", "(in 2 days)"}},
		{admin.CertificateStatus{Issuer: "R11", NotAfter: expiry, State: "valid", Challenge: "dns-01"}, []string{"R11, expires", "by dns-01"}},
		{admin.CertificateStatus{State: "pending"}, []string{"pending: being ordered"}},
		{admin.CertificateStatus{State: "failed", Error: strings.Repeat("x", 500), NextRetry: expiry}, []string{"FAILED, next try", strings.Repeat("x", 160) + "..."}},
	} {
		got := certificateText(&c.cert)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("certificateText(%+v) = %q, want it to contain %q", c.cert, got, w)
			}
		}
		if len(got) > 300 {
			t.Errorf("certificateText is %d bytes long, want the error shortened", len(got))
		}
	}
}
