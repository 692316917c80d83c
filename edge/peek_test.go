package edge

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/badhello"
)

var updateHellos = flag.Bool("update-hellos", false, "capture OpenSSL's and curl's ClientHellos into testdata/clienthello")

// bytesConn is a read-only net.Conn over fixed bytes, for driving the parser alone.
type bytesConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return 0, errors.New("read-only") }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// captureGoHello records the first flight of a crypto/tls client with cfg.
func captureGoHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	go func() {
		tls.Client(client, cfg).Handshake()
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	hello, peeked, err := PeekClientHello(server)
	server.Close()
	if err != nil || hello == nil {
		t.Fatalf("peek Go ClientHello: %v", err)
	}
	return peeked
}

// goHellos are the ClientHellos of Go's client in its main shapes: default (with a
// post-quantum X25519MLKEM768 key share, well over a kilobyte), TLS 1.2 only, no SNI.
func goHellos(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"go-default-pq":  captureGoHello(t, &tls.Config{ServerName: "pq.example.com", InsecureSkipVerify: true}),
		"go-tls12":       captureGoHello(t, &tls.Config{ServerName: "old.example.com", MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true}),
		"go-x25519-only": captureGoHello(t, &tls.Config{ServerName: "x.example.com", CurvePreferences: []tls.CurveID{tls.X25519}, InsecureSkipVerify: true}),
		"go-no-sni":      captureGoHello(t, &tls.Config{InsecureSkipVerify: true}),
	}
}

// withGREASE adds a GREASE cipher suite and a GREASE extension (RFC 8701) to a single-
// record ClientHello, as browsers send them, fixing up every length on the way.
func withGREASE(t testing.TB, rec []byte) []byte {
	t.Helper()
	body := rec[9:] // record header (5) + handshake header (4)
	p := 2 + 32
	p += 1 + int(body[p]) // session id
	suitesLen := int(binary.BigEndian.Uint16(body[p:]))
	suitesAt := p
	p += 2 + suitesLen
	p += 1 + int(body[p]) // compression methods
	extLen := int(binary.BigEndian.Uint16(body[p:]))
	var out []byte
	out = append(out, body[:suitesAt]...)
	out = binary.BigEndian.AppendUint16(out, uint16(suitesLen+2))
	out = append(out, 0x1a, 0x1a)
	out = append(out, body[suitesAt+2:p]...)
	out = binary.BigEndian.AppendUint16(out, uint16(extLen+4))
	out = append(out, 0x0a, 0x0a, 0, 0)
	out = append(out, body[p+2:]...)
	hs := append([]byte{1, 0, 0, 0}, out...)
	hs[1], hs[2], hs[3] = byte(len(out)>>16), byte(len(out)>>8), byte(len(out))
	record := append([]byte{22, 3, 1, 0, 0}, hs...)
	binary.BigEndian.PutUint16(record[3:], uint16(len(hs)))
	return record
}

func readHelloFiles(t testing.TB) map[string][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", "clienthello", "*.bin"))
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".bin")] = data
	}
	return out
}

// fragmented splits a one-record ClientHello into records of at most size bytes, as TLS
// allows and some clients and middleboxes do.
func fragmented(rec []byte, size int) []byte {
	var out []byte
	for hs := rec[recordHeaderLen:]; len(hs) > 0; {
		n := min(size, len(hs))
		out = append(out, rec[0], rec[1], rec[2], byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

// cryptoTLSHello is what crypto/tls's own server parses from data: the reference the peek
// must agree with. nil if crypto/tls rejects it.
func cryptoTLSHello(data []byte) *tls.ClientHelloInfo {
	var hello *tls.ClientHelloInfo
	stop := errors.New("stop")
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = h
		return nil, stop
	}}
	tls.Server(&bytesConn{r: bytes.NewReader(data)}, cfg).Handshake()
	return hello
}

func TestPeekRealClientHellos(t *testing.T) {
	hellos := goHellos(t)
	hellos["go-grease"] = withGREASE(t, hellos["go-tls12"])
	hellos["go-fragmented"] = fragmented(hellos["go-default-pq"], 100)
	for name, data := range readHelloFiles(t) {
		hellos[name] = data
	}
	if len(hellos) < 7 {
		t.Fatalf("only %d ClientHellos; testdata/clienthello should hold OpenSSL's and curl's", len(hellos))
	}
	for name, data := range hellos {
		t.Run(name, func(t *testing.T) {
			trailing := []byte("application bytes after the hello")
			hello, peeked, err := PeekClientHello(&bytesConn{r: bytes.NewReader(append(bytes.Clone(data), trailing...))})
			if err != nil {
				t.Fatalf("peek: %v", err)
			}
			want := referenceSNI(data)
			if ref := cryptoTLSHello(data); ref == nil {
				t.Fatal("crypto/tls rejects this ClientHello")
			} else if want == "" {
				want = ref.ServerName // several records: beyond the minimal reference parser
			}
			if want == "" && !strings.Contains(name, "no-sni") {
				t.Fatalf("reference parser found no SNI in %s", name)
			}
			if hello.ServerName != want {
				t.Errorf("SNI = %q, reference parser says %q", hello.ServerName, want)
			}
			if !bytes.HasPrefix(append(bytes.Clone(data), trailing...), peeked) || len(peeked) < len(data) {
				t.Errorf("peeked %d bytes that are not the input's first ones (hello is %d)", len(peeked), len(data))
			}
		})
	}
}

func TestPeekRejections(t *testing.T) {
	go12 := goHellos(t)["go-tls12"]
	cases := map[string][]byte{
		"duplicate server_name": withExtension(t, go12, 0, []byte{0, 6, 0, 0, 3, 'e', 'v', 'l'}),
		"trailing dot":          withoutSNI(t, withExtension(t, go12, 0, []byte{0, 6, 0, 0, 3, 'a', 'b', '.'})),
		"not a hello first":     append([]byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, go12...),
		"http":                  []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
		"empty":                 nil,
		"truncated":             goHellos(t)["go-tls12"][:40],
		"sslv2":                 {0x80, 0x2e, 0x01, 0x00, 0x02},
		"huge record": append([]byte{22, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff},
			bytes.Repeat([]byte{0}, 70_000)...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if cryptoTLSHello(data) != nil {
				t.Fatal("crypto/tls accepts this input: not a rejection case")
			}
			hello, peeked, err := PeekClientHello(&bytesConn{r: bytes.NewReader(data)})
			if err == nil || hello != nil {
				t.Fatalf("accepted %q", name)
			}
			if len(peeked) > MaxClientHello {
				t.Errorf("read %d bytes, more than the %d limit", len(peeked), MaxClientHello)
			}
		})
	}
}

// TestCaptureClientHellos records OpenSSL's and curl's first flights with -update-hellos.
func TestCaptureClientHellos(t *testing.T) {
	if !*updateHellos {
		t.Skip("run with -update-hellos to capture ClientHellos from openssl and curl")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join("testdata", "clienthello"), 0o755))
	capture := func(name string, args ...string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		defer ln.Close()
		cmd := exec.Command(args[0], append(args[1:], ln.Addr().String())...)
		cmd.Stdin = strings.NewReader("")
		must(cmd.Start())
		defer cmd.Process.Kill()
		c, err := ln.Accept()
		must(err)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, peeked, err := PeekClientHello(c)
		must(err)
		c.Close()
		cmd.Wait()
		must(os.WriteFile(filepath.Join("testdata", "clienthello", name+".bin"), peeked, 0o644))
	}
	capture("openssl-tls13", "openssl", "s_client", "-servername", "openssl.example.com", "-connect")
	capture("openssl-tls12", "openssl", "s_client", "-tls1_2", "-servername", "openssl12.example.com", "-connect")
	capture("curl", "sh", "-c", `curl -sk --max-time 2 --resolve curl.example.com:${0##*:}:127.0.0.1 https://curl.example.com:${0##*:}/`)
}

// referenceSNI is an independent, minimal parser of the server_name extension of a
// ClientHello in one record, to check the peek against.
func referenceSNI(rec []byte) string {
	if len(rec) < 9 || rec[0] != 22 || rec[5] != 1 {
		return ""
	}
	b := rec[9:]
	read := func(n int) []byte {
		if len(b) < n {
			b = nil
			return nil
		}
		out := b[:n]
		b = b[n:]
		return out
	}
	u8 := func() int {
		v := read(1)
		if v == nil {
			return 0
		}
		return int(v[0])
	}
	u16 := func() int {
		v := read(2)
		if v == nil {
			return 0
		}
		return int(binary.BigEndian.Uint16(v))
	}
	read(34)
	read(u8())
	read(u16())
	read(u8())
	exts := read(u16())
	for len(exts) >= 4 {
		typ, n := binary.BigEndian.Uint16(exts), int(binary.BigEndian.Uint16(exts[2:]))
		if len(exts) < 4+n {
			return ""
		}
		data := exts[4 : 4+n]
		exts = exts[4+n:]
		if typ == 0 && len(data) >= 5 && data[2] == 0 {
			l := int(binary.BigEndian.Uint16(data[3:]))
			if len(data) >= 5+l {
				return string(data[5 : 5+l])
			}
		}
	}
	return ""
}

// FuzzClientHello: the peek never panics, never reads past its bound or invents bytes,
// and when it and the reference parser both find a server name, they agree; when both
// it and crypto/tls refuse the bytes, they send the same alert.
func FuzzClientHello(f *testing.F) {
	hellos := goHellos(f)
	hellos["go-grease"] = withGREASE(f, hellos["go-tls12"])
	for name, data := range readHelloFiles(f) {
		hellos[name] = data
	}
	for _, h := range hellos {
		f.Add(h)
	}
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add(fragmented(hellos["go-default-pq"], 300))
	alpn, err := badhello.GoHello(&tls.Config{ServerName: "zk.test", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	if err != nil {
		f.Fatal(err)
	}
	cases, err := badhello.Corpus(alpn)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		f.Add(c.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hello, peeked, err := PeekClientHello(&bytesConn{r: bytes.NewReader(data)})
		if len(peeked) > MaxClientHello || !bytes.HasPrefix(data, peeked) {
			t.Fatalf("peeked %d bytes, not a prefix of the %d-byte input within the bound", len(peeked), len(data))
		}
		if (hello == nil) == (err == nil) {
			t.Fatalf("hello = %v with err = %v", hello != nil, err)
		}
		if hello != nil {
			if ref := referenceSNI(data); ref != "" && ref != hello.ServerName {
				t.Fatalf("SNI %q, reference %q", hello.ServerName, ref)
			}
		}
		// What crypto/tls accepts, the peek accepts, with the same name and versions.
		if ref := cryptoTLSHello(data); ref != nil {
			if hello == nil {
				t.Fatalf("crypto/tls accepts a ClientHello the peek rejects: %v", err)
			}
			if hello.ServerName != ref.ServerName || !slices.Equal(hello.SupportedVersions, ref.SupportedVersions) ||
				!slices.Equal(hello.SupportedProtos, ref.SupportedProtos) {
				t.Fatalf("peek %q %x %q, crypto/tls %q %x %q", hello.ServerName, hello.SupportedVersions, hello.SupportedProtos,
					ref.ServerName, ref.SupportedVersions, ref.SupportedProtos)
			}
		}
		if hello == nil {
			got, ref := badhello.None, cryptoTLSAnswer(data)
			if a := alertFor(err); a != 0 {
				got = int(a)
			}
			if got != ref && !otherMessage(got, ref, err) && !(ref == badhello.Served && len(data) > MaxClientHello) {
				t.Fatalf("peek refuses with alert %d (%v), crypto/tls answers %d", got, err, ref)
			}
		}
	})
}

// withExtension appends an extension to a one-record ClientHello, fixing the lengths.
func withExtension(t testing.TB, rec []byte, typ uint16, data []byte) []byte {
	t.Helper()
	ext := binary.BigEndian.AppendUint16(nil, typ)
	ext = binary.BigEndian.AppendUint16(ext, uint16(len(data)))
	ext = append(ext, data...)
	out := append(bytes.Clone(rec), ext...)
	grow := func(at, width int) {
		if width == 2 {
			binary.BigEndian.PutUint16(out[at:], binary.BigEndian.Uint16(out[at:])+uint16(len(ext)))
			return
		}
		n := int(out[at])<<16 | int(out[at+1])<<8 | int(out[at+2]) + len(ext)
		out[at], out[at+1], out[at+2] = byte(n>>16), byte(n>>8), byte(n)
	}
	grow(3, 2) // record length
	grow(6, 3) // handshake length
	body := out[9:]
	p := 2 + 32
	p += 1 + int(body[p])
	p += 2 + int(binary.BigEndian.Uint16(body[p:]))
	p += 1 + int(body[p])
	grow(9+p, 2) // extensions length
	return out
}

// withoutSNI renames the first server_name extension of a one-record ClientHello to an
// unassigned type, so that the one added after it is the only one.
func withoutSNI(t testing.TB, rec []byte) []byte {
	t.Helper()
	out := bytes.Clone(rec)
	body := out[9:]
	p := 2 + 32
	p += 1 + int(body[p])
	p += 2 + int(binary.BigEndian.Uint16(body[p:]))
	p += 1 + int(body[p])
	for q := p + 2; q+4 <= len(body); q += 4 + int(binary.BigEndian.Uint16(body[q+2:])) {
		if binary.BigEndian.Uint16(body[q:]) == 0 {
			binary.BigEndian.PutUint16(body[q:], 0xfe00)
			return out
		}
	}
	t.Fatal("no server_name extension")
	return nil
}
