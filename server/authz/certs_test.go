package authz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.temporal.io/server/common/authorization"
	"google.golang.org/grpc/credentials"
)

var (
	testKeyOnce sync.Once
	testKey     *ecdsa.PrivateKey
)

// leaf is a self-signed certificate with the given template fields (the mapper only reads the verified chain,
// which the tests build by hand).
func leaf(t *testing.T, subject pkix.Name, dns []string, uris []string, emails []string, ips []string) *x509.Certificate {
	t.Helper()
	testKeyOnce.Do(func() {
		var err error
		testKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
	})
	template := &x509.Certificate{
		SerialNumber:   big.NewInt(time.Now().UnixNano()),
		Subject:        subject,
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(time.Hour),
		DNSNames:       dns,
		EmailAddresses: emails,
	}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		template.URIs = append(template.URIs, u)
	}
	for _, ip := range ips {
		template.IPAddresses = append(template.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &testKey.PublicKey, testKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func cn(t *testing.T, commonName string) *x509.Certificate {
	return leaf(t, pkix.Name{CommonName: commonName}, nil, nil, nil, nil)
}

// verified is the AuthInfo of a connection whose chain the TLS stack verified.
func verified(cert *x509.Certificate) *authorization.AuthInfo {
	return &authorization.AuthInfo{
		TLSSubject: &cert.Subject,
		TLSConnection: &credentials.TLSInfo{State: tls.ConnectionState{
			PeerCertificates: []*x509.Certificate{cert},
			VerifiedChains:   [][]*x509.Certificate{{cert}},
		}},
	}
}

// unverified is a connection that presented a certificate nobody verified (requireClientAuth false).
func unverified(cert *x509.Certificate) *authorization.AuthInfo {
	return &authorization.AuthInfo{
		TLSConnection: &credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}},
	}
}
