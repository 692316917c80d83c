package upstream

import (
	"crypto/tls"
	"strings"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/tlsd/tlsd/relay"
)

// proxyHeader is the PROXY header of version 1 or 2 that tells the upstream who the
// client is. Version 2 carries, as HAProxy's does, the server name the client asked for
// (PP2_TYPE_AUTHORITY) and, where tlsd terminated, the negotiated protocol
// (PP2_TYPE_ALPN) and the TLS facts (PP2_TYPE_SSL: the version, whether a client
// certificate was presented and verified, and its common name).
func proxyHeader(version byte, c *relay.Conn) (*proxyproto.Header, error) {
	dst := c.LocalAddr()
	if c.Info.Local != nil {
		dst = c.Info.Local
	}
	h := proxyproto.HeaderProxyFromAddrs(version, c.ClientAddr(), dst)
	if version != 2 {
		return h, nil
	}
	tlvs, err := clientTLVs(c.Info)
	if err != nil {
		return nil, err
	}
	return h, h.SetTLVs(tlvs)
}

func clientTLVs(info *relay.Info) ([]proxyproto.TLV, error) {
	var tlvs []proxyproto.TLV
	if info.SNI != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(info.SNI)})
	}
	if info.TLSVersion == 0 {
		return tlvs, nil // passthrough: tlsd knows no more
	}
	if info.ALPN != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(info.ALPN)})
	}
	ssl, err := sslTLV(info)
	if err != nil {
		return nil, err
	}
	return append(tlvs, ssl), nil
}

// sslTLV is PP2_TYPE_SSL. Its verify field is zero only for a certificate presented
// and verified; CERT_CONN says one came on this connection, CERT_SESS in its session
// (a resumed session carries the certificate of its first handshake).
func sslTLV(info *relay.Info) (proxyproto.TLV, error) {
	s := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
	version := strings.ReplaceAll(tls.VersionName(info.TLSVersion), " ", "v") // "TLSv1.3", as HAProxy and OpenSSL spell it
	s.TLV = append(s.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(version)})
	if info.ClientCert != "" {
		s.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS
		if !info.Resumed {
			s.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
		}
	}
	if info.ClientCert == relay.CertVerified {
		s.Verify = 0
		if info.ClientCN != "" {
			s.TLV = append(s.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(info.ClientCN)})
		}
	}
	return s.Marshal()
}
