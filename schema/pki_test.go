package schema

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

var updatePKI = flag.Bool("update-pki", false, "regenerate the certificates in testdata/pki")

// fixedNow is the clock of the golden tests; the fixtures' validity periods are set
// around it so that expired, expiring and not-yet-valid stay so forever.
var fixedNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// TestGeneratePKI writes testdata/pki when run with -update-pki.
func TestGeneratePKI(t *testing.T) {
	if !*updatePKI {
		t.Skip("run with -update-pki to regenerate testdata/pki")
	}
	dir := filepath.Join("testdata", "pki")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	out := func(name string) string { return filepath.Join(dir, name) }
	ca, err := testpki.NewCA("tlsd test CA", date(2026, 1, 1), date(2040, 1, 1))
	must(err)
	must(ca.WriteFiles(out("ca.crt"), out("ca.key")))
	clients, err := testpki.NewCA("tlsd test clients CA", date(2026, 1, 1), date(2040, 1, 1))
	must(err)
	must(clients.WriteFiles(out("clients-ca.crt"), ""))
	leaf := func(name string, nb, na time.Time, dns ...string) {
		p, err := ca.Issue(testpki.Options{CommonName: dns[0], DNSNames: dns, NotBefore: nb, NotAfter: na})
		must(err)
		must(p.WriteFiles(out(name+".crt"), out(name+".key"), ca))
	}
	leaf("example", date(2026, 1, 1), date(2036, 1, 1), "billing.example.com", "api.example.com")
	leaf("wildcard", date(2026, 1, 1), date(2036, 1, 1), "*.example.com")
	leaf("expired", date(2020, 1, 1), date(2021, 1, 1), "billing.example.com")
	leaf("expiring", date(2029, 1, 1), date(2030, 1, 10), "billing.example.com")
	leaf("notyet", date(2035, 1, 1), date(2040, 1, 1), "billing.example.com")
	other, err := ca.Issue(testpki.Options{CommonName: "other", DNSNames: []string{"other.example.com"}})
	must(err)
	must(other.WriteFiles("", out("other.key")))
	client, err := clients.Issue(testpki.Options{CommonName: "alice", DNSNames: []string{"alice.clients.example.com"}, Client: true,
		NotBefore: date(2026, 1, 1), NotAfter: date(2036, 1, 1)})
	must(err)
	must(client.WriteFiles(out("client.crt"), "")) // a leaf alone: not a CA bundle
	stranger, err := testpki.NewCA("mallory's own CA", date(2026, 1, 1), date(2040, 1, 1))
	must(err)
	mallory, err := stranger.Issue(testpki.Options{CommonName: "mallory", DNSNames: []string{"mallory.clients.example.com"}, Client: true,
		NotBefore: date(2026, 1, 1), NotAfter: date(2036, 1, 1)})
	must(err)
	// The CA and a leaf it did not issue: the leaf would be trusted as an anchor.
	must(os.WriteFile(out("clients-ca-and-leaf.crt"), append(clients.CertPEM(), mallory.CertPEM()...), 0o644))
	must(os.WriteFile(out("garbage.pem"), []byte("this is not a PEM file\n"), 0o644))
}
