package tlsreload

import (
	"strings"
	"testing"
)

func TestParseBundleReadsEveryCertificate(t *testing.T) {
	a, b, c := newAuthority(t, "a"), newAuthority(t, "b"), newAuthority(t, "c")
	data := append([]byte("# a comment before the first block\n"), bundleOf(a, b)...)
	data = append(data, newKey(t).D.Bytes()...) // junk between blocks (not at a line start as a BEGIN)
	data = append(data, '\n')
	data = append(data, c.pem...)
	certs, err := ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 || !certs[0].Equal(a.cert) || !certs[1].Equal(b.cert) || !certs[2].Equal(c.cert) {
		t.Fatalf("parsed %d certificates", len(certs))
	}
	crlf := strings.ReplaceAll(string(bundleOf(a, b)), "\n", "\r\n")
	if certs, err := ParseBundle([]byte(crlf)); err != nil || len(certs) != 2 {
		t.Fatalf("CRLF bundle: %d certificates, %v", len(certs), err)
	}
}

func TestParseBundleRejectsDamage(t *testing.T) {
	a, b := newAuthority(t, "a"), newAuthority(t, "b")
	both := bundleOf(a, b)
	damaged := append([]byte(nil), both...)
	damaged[60] = '!'
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello\n"),
		"truncated": both[:len(both)-30],
		"damaged":   damaged,
		"bad DER":   []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if certs, err := ParseBundle(data); err == nil {
			t.Errorf("%s: parsed %d certificates", name, len(certs))
		}
	}
}
