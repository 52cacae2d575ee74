package tlsreload

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/metrics"
)

// Pool is one good reading of a CA bundle: every certificate of every file.
type Pool struct {
	Pool  *x509.CertPool
	Certs []*x509.Certificate
	// Generation counts the contents put in force (1 for the first); a connection checked against a
	// generation is not checked again until it changes (or its chain expires).
	Generation uint64
	SHA256     string
}

// Bundle is a list of PEM CA files (e.g. rootCaFiles or clientCaFiles) read again by Reload. The pool in force
// changes only when every file reads and parses completely, so a missing, partly written or malformed file keeps
// the last good pool. Files are read by path each time: a Kubernetes Secret volume's `..data` symlink swap and an
// atomic rename both show.
type Bundle struct {
	files   []string
	logger  log.Logger
	metrics metrics.Handler

	pool atomic.Pointer[Pool]

	mu       sync.Mutex // one reload at a time
	lastSeen string     // sha256 of the contents (or the error) last acted on
	stale    atomic.Bool
}

// newBundle reads the files once: an error here (no good pool yet) is the caller's, as for the stock provider.
func newBundle(files []string, logger log.Logger, handler metrics.Handler) (*Bundle, error) {
	b := &Bundle{files: append([]string(nil), files...), logger: logger, metrics: handler}
	pool, err := readBundle(b.files)
	if err != nil {
		return nil, fmt.Errorf("CA bundle %v: %w", b.files, err)
	}
	pool.Generation = 1
	b.pool.Store(pool)
	b.lastSeen = pool.SHA256
	logger.Info("CA bundle loaded (reloading TLS)", tag.TLSCertFiles(b.files), tag.NewInt("certificates", len(pool.Certs)),
		tag.NewStringTag("sha256", pool.SHA256))
	recordBundleLoad(handler, b.files, resultOK, false)
	return b, nil
}

// Current is the pool in force (never nil, never with a nil CertPool: a nil pool would mean the system roots).
func (b *Bundle) Current() *Pool { return b.pool.Load() }

// Files are the bundle's paths.
func (b *Bundle) Files() []string { return b.files }

// Stale is true while the files on disk are unreadable or malformed (the last good pool is in force).
func (b *Bundle) Stale() bool { return b.stale.Load() }

// Reload reads the files again and swaps the pool when their contents changed and parse; it reports whether the
// pool in force changed. A content (or error) seen before is not acted on again: a bad bundle is logged once.
func (b *Bundle) Reload() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	pool, err := readBundle(b.files)
	if err != nil {
		key := "error:" + err.Error() // with the contents' sha256 when they read: each bad content is logged once
		if key == b.lastSeen {
			return false
		}
		b.lastSeen = key
		b.stale.Store(true)
		inForce := b.pool.Load()
		b.logger.Error("CA bundle rejected: the last good pool stays in force", tag.TLSCertFiles(b.files), tag.Error(err),
			tag.NewInt("certificates", len(inForce.Certs)), tag.NewStringTag("sha256", inForce.SHA256))
		recordBundleLoad(b.metrics, b.files, resultError, true)
		return false
	}
	if pool.SHA256 == b.lastSeen {
		return false
	}
	b.lastSeen = pool.SHA256
	b.stale.Store(false)
	inForce := b.pool.Load()
	if pool.SHA256 == inForce.SHA256 { // back to the contents in force after a bad spell
		recordBundleLoad(b.metrics, b.files, resultOK, false)
		return false
	}
	pool.Generation = inForce.Generation + 1
	b.pool.Store(pool)
	b.logger.Info("CA bundle reloaded: new handshakes verify against it", tag.TLSCertFiles(b.files),
		tag.NewInt("certificates", len(pool.Certs)), tag.NewStringTag("sha256", pool.SHA256))
	recordBundleLoad(b.metrics, b.files, resultOK, false)
	return true
}

// readBundle reads and parses every file; any error rejects the whole bundle.
func readBundle(files []string) (*Pool, error) {
	if len(files) == 0 {
		return nil, errors.New("no CA files")
	}
	sum := sha256.New()
	pool := x509.NewCertPool()
	var all []*x509.Certificate
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		certs, err := ParseBundle(data)
		if err != nil {
			content := sha256.Sum256(data)
			return nil, fmt.Errorf("%s (sha256 %s): %w", file, hex.EncodeToString(content[:]), err)
		}
		for _, cert := range certs {
			pool.AddCert(cert)
		}
		all = append(all, certs...)
		fmt.Fprintf(sum, "%d:%s\x00%d:", len(file), file, len(data))
		sum.Write(data)
	}
	return &Pool{Pool: pool, Certs: all, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// ParseBundle parses every CERTIFICATE block of a PEM bundle. Stricter than x509.CertPool.AppendCertsFromPEM
// (which skips what it cannot parse, so a damaged bundle silently loses CAs): a certificate that does not parse,
// a PEM block that does not decode (pem.Decode skips a damaged block and goes on with the next), a truncated last
// block, or no certificate at all is an error. Text between blocks and other block types are ignored, as there.
func ParseBundle(data []byte) ([]*x509.Certificate, error) {
	begins := 0
	lines := bufio.NewScanner(bytes.NewReader(data))
	lines.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "-----BEGIN ") {
			begins++
		}
	}
	var certs []*x509.Certificate
	blocks := 0
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks++
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if blocks != begins {
		return nil, fmt.Errorf("%d PEM block(s) do not decode (truncated or damaged)", begins-blocks)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}
