package tlsreload

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
)

var serial atomic.Int64

// authority is a test CA that issues leaves.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newAuthority(t *testing.T, name string) *authority {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf is a certificate for both server and client auth with the given DNS name (and 127.0.0.1).
type leaf struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
}

func (a *authority) issue(t *testing.T, dnsName string) *leaf {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: dnsName, Organization: []string{a.cert.Subject.CommonName}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(12 * time.Hour),
		DNSNames:     []string{dnsName},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &leaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if l.tls, err = tls.X509KeyPair(l.certPEM, l.keyPEM); err != nil {
		t.Fatal(err)
	}
	return l
}

func bundleOf(cas ...*authority) []byte {
	var out []byte
	for _, ca := range cas {
		out = append(out, ca.pem...)
	}
	return out
}

// secretVolume writes files as the kubelet does for a Secret volume: a timestamped directory, an atomic rename
// of the `..data` symlink onto it, and per-key symlinks through `..data`.
type secretVolume struct {
	dir string
	gen int
}

func newSecretVolume(t *testing.T, files map[string][]byte) *secretVolume {
	v := &secretVolume{dir: t.TempDir()}
	v.write(t, files)
	return v
}

func (v *secretVolume) path(name string) string { return filepath.Join(v.dir, name) }

func (v *secretVolume) write(t *testing.T, files map[string][]byte) {
	t.Helper()
	v.gen++
	previous, _ := os.Readlink(v.path("..data"))
	stamp := fmt.Sprintf("..2026_12_01_00_00_%02d.%d", v.gen, os.Getpid())
	if err := os.Mkdir(v.path(stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.path(stamp), name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(stamp, v.path("..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(v.path("..data_tmp"), v.path("..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if _, err := os.Lstat(v.path(name)); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), v.path(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if previous != "" {
		if err := os.RemoveAll(v.path(previous)); err != nil {
			t.Fatal(err)
		}
	}
}

// replaceFile writes data next to path and renames it over path (an atomic replace).
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// internodeSettings is a global.tls with an internode section read from dir's tls.crt, tls.key and ca.crt.
func internodeSettings(dir, serverName string) config.RootTLS {
	return config.RootTLS{Internode: config.GroupTLS{
		Server: config.ServerTLS{
			CertFile:          filepath.Join(dir, "tls.crt"),
			KeyFile:           filepath.Join(dir, "tls.key"),
			ClientCAFiles:     []string{filepath.Join(dir, "ca.crt")},
			RequireClientAuth: true,
		},
		Client: config.ClientTLS{ServerName: serverName, RootCAFiles: []string{filepath.Join(dir, "ca.crt")}},
	}}
}

func newTestProvider(t *testing.T, settings config.RootTLS) *Provider {
	t.Helper()
	p, err := NewProvider(settings, time.Hour, log.NewNoopLogger(), nil) // tests call Refresh themselves
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// echoServer accepts TLS connections on loopback with cfg and echoes lines back; a failed handshake closes the
// connection.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close() })
	go func() {
		for {
			raw, err := listener.Accept()
			if err != nil {
				return
			}
			go func() {
				conn := tls.Server(raw, cfg)
				defer conn.Close()
				if err := conn.Handshake(); err != nil {
					return
				}
				lines := bufio.NewScanner(conn)
				for lines.Scan() {
					if _, err := conn.Write(append(lines.Bytes(), '\n')); err != nil {
						return
					}
				}
			}()
		}
	}()
	return listener.Addr().String()
}

// session is a client connection that completed a handshake.
type session struct {
	conn  *tls.Conn
	lines *bufio.Scanner
}

// dial connects with cfg and completes one echo round trip (in TLS 1.3 a server's refusal of the client
// certificate shows only at the first read).
func dial(t *testing.T, addr string, cfg *tls.Config) (*session, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, cfg)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	s := &session{conn: conn, lines: bufio.NewScanner(conn)}
	if err := conn.Handshake(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := s.roundTrip(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = conn.Close() })
	return s, nil
}

func (s *session) roundTrip() error {
	_ = s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.conn.Write([]byte("ping\n")); err != nil {
		return err
	}
	if !s.lines.Scan() {
		if err := s.lines.Err(); err != nil {
			return err
		}
		return fmt.Errorf("connection closed")
	}
	if got := s.lines.Text(); got != "ping" {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

// plainClient is a stock crypto/tls client presenting id and trusting roots.
func plainClient(id *leaf, serverName string, roots ...*authority) *tls.Config {
	pool := x509.NewCertPool()
	for _, ca := range roots {
		pool.AddCert(ca.cert)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if id != nil {
		cfg.Certificates = []tls.Certificate{id.tls}
	}
	return cfg
}

// plainServer is a stock crypto/tls server presenting id that asks for (and does not verify) a client certificate.
func plainServer(id *leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{id.tls}, ClientAuth: tls.RequireAnyClientCert}
}
