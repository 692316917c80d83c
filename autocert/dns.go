package autocert

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"
)

// rfc2136 publishes TXT records by dynamic update (RFC 2136) signed with TSIG (RFC 8945):
// the libdns appender and deleter certmagic's DNS-01 solver drives.
type rfc2136 struct {
	server, keyName, algorithm, secret string
}

func newRFC2136(c RFC2136) (*rfc2136, error) {
	alg := dns.Fqdn(strings.ToLower(c.Algorithm))
	switch alg {
	case dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512:
	default:
		return nil, fmt.Errorf("rfc2136: TSIG algorithm %q is not one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512", c.Algorithm)
	}
	if len(c.Secret) == 0 {
		return nil, errors.New("rfc2136: the TSIG secret is empty")
	}
	return &rfc2136{server: c.Server, keyName: dns.Fqdn(strings.ToLower(c.KeyName)), algorithm: alg,
		secret: base64.StdEncoding.EncodeToString(c.Secret)}, nil
}

// AppendRecords adds the records to zone.
func (p *rfc2136) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if err := p.update(ctx, zone, recs, false); err != nil {
		return nil, err
	}
	return recs, nil
}

// DeleteRecords removes exactly these records from zone.
func (p *rfc2136) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if err := p.update(ctx, zone, recs, true); err != nil {
		return nil, err
	}
	return recs, nil
}

// update sends one signed UPDATE message over TCP and checks the server's answer.
func (p *rfc2136) update(ctx context.Context, zone string, recs []libdns.Record, remove bool) error {
	zone = dns.Fqdn(zone)
	rrs := make([]dns.RR, 0, len(recs))
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" {
			return fmt.Errorf("rfc2136: only TXT records are published, not %s", rr.Type)
		}
		ttl := uint32(max(rr.TTL, time.Second) / time.Second)
		rrs = append(rrs, &dns.TXT{Hdr: dns.RR_Header{Name: libdns.AbsoluteName(rr.Name, zone), Rrtype: dns.TypeTXT,
			Class: dns.ClassINET, Ttl: ttl}, Txt: []string{rr.Data}})
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	if remove {
		m.Remove(rrs)
	} else {
		m.Insert(rrs)
	}
	m.SetTsig(p.keyName, p.algorithm, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second, TsigSecret: map[string]string{p.keyName: p.secret}}
	resp, _, err := c.ExchangeContext(ctx, m, p.server)
	return p.verdict(zone, resp, err)
}

// verdict words the server's answer for an operator: a refused signature names the
// settings to check.
func (p *rfc2136) verdict(zone string, resp *dns.Msg, err error) error {
	what := fmt.Sprintf("rfc2136: update of zone %s at %s", zone, p.server)
	if resp != nil {
		if t := resp.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
			return fmt.Errorf("%s: the server refused the TSIG signature of key %s (%s): check tsig_key_name, tsig_algorithm and tsig_secret_file",
				what, p.keyName, rcodeName(int(t.Error)))
		}
		if resp.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("%s: refused with %s", what, rcodeName(resp.Rcode))
		}
	}
	switch {
	case errors.Is(err, dns.ErrSig), errors.Is(err, dns.ErrAuth):
		return fmt.Errorf("%s: the answer's TSIG signature does not verify (%v): check tsig_secret_file and tsig_algorithm", what, err)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func rcodeName(code int) string {
	if s, ok := dns.RcodeToString[code]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(code)
}

// hookSolver publishes DNS-01 records with an operator's program, called as
// ARGV... present|cleanup FQDN VALUE. Exit status 0 means done: tlsd does no zone lookup
// and no propagation check, so the hook waits for propagation itself if it must.
type hookSolver struct {
	argv    []string
	timeout time.Duration
	log     *slog.Logger
	issuer  string
}

// Present publishes the record.
func (h *hookSolver) Present(ctx context.Context, chal acme.Challenge) error {
	return h.run(ctx, "present", chal)
}

// CleanUp removes it; it runs even when the order was cancelled.
func (h *hookSolver) CleanUp(ctx context.Context, chal acme.Challenge) error {
	return h.run(context.WithoutCancel(ctx), "cleanup", chal)
}

// hookOutput bounds what is kept of a hook's stderr: the log gets its start.
const hookOutput = 4 << 10

func (h *hookSolver) run(ctx context.Context, action string, chal acme.Challenge) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	fqdn := dns.Fqdn(chal.DNS01TXTRecordName())
	cmd := exec.CommandContext(ctx, h.argv[0], append(h.argv[1:len(h.argv):len(h.argv)], action, fqdn, chal.DNS01KeyAuthorization())...)
	// The hook's own children go when it is cut off, and a child that keeps stderr open
	// does not hold tlsd past WaitDelay.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	stderr := &limitedBuffer{max: hookOutput}
	cmd.Stderr = stderr
	start := time.Now()
	err := cmd.Run()
	attrs := []any{"issuer", h.issuer, "hook", h.argv[0], "action", action, "fqdn", fqdn, "took", time.Since(start).Round(time.Millisecond)}
	if out := strings.TrimSpace(stderr.String()); out != "" {
		attrs = append(attrs, "stderr", out) // the log handler escapes it
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		err = fmt.Errorf("dns hook %s %s %s did not finish within %s (propagation_timeout)", h.argv[0], action, fqdn, h.timeout)
	case err != nil:
		err = fmt.Errorf("dns hook %s %s %s failed: %v%s", h.argv[0], action, fqdn, err, lastLine(stderr.String()))
	}
	if err != nil {
		h.log.Warn("dns hook failed", append(attrs, "error", err)...)
		return err
	}
	h.log.Info("dns hook ran", attrs...)
	return nil
}

// lastLine is ": LINE" for the hook's last line of stderr, the one that usually says why.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return ": " + strconv.Quote(l)
	}
	return ""
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
