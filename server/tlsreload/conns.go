package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/metrics"
)

// tracker holds the server side's open TLS connections that a client certificate authenticated, with the chain
// the client sent and the bundle that verified it. Check closes those whose chain no longer verifies against the
// bundle's current pool: gRPC (and ringpop's TChannel) connections live for hours, and a CA removed from a
// bundle must not keep authenticating them.
//
// The connections are the raw ones under crypto/tls (tls.ClientHelloInfo.Conn): closing one ends the TLS
// session and gRPC's transport on it, in-flight calls fail with Unavailable and the client dials again, with a
// new handshake against the current pool. A closed connection (by gRPC or by us) leaves the set at the next
// Check; only connections that implement syscall.Conn (TCP, Unix: every listener Temporal opens) can be told
// closed, so only those are tracked.
type tracker struct {
	logger  log.Logger
	metrics metrics.Handler

	checking sync.Mutex // serializes check
	mu       sync.Mutex // guards conns
	conns    map[net.Conn]*tracked
}

type tracked struct {
	leaf          *x509.Certificate
	intermediates *x509.CertPool
	bundle        *Bundle
	generation    uint64    // the pool generation last verified against
	validUntil    time.Time // the verified chains' end (the latest over chains of each chain's earliest NotAfter)
	since         time.Time
}

func newTracker(logger log.Logger, handler metrics.Handler) *tracker {
	return &tracker{logger: logger, metrics: handler, conns: make(map[net.Conn]*tracked)}
}

// track records a connection whose handshake verified state.PeerCertificates against generation of bundle.
// Returns false (not tracked) for a connection that cannot be told closed.
func (t *tracker) track(conn net.Conn, state tls.ConnectionState, bundle *Bundle, generation uint64) bool {
	if conn == nil || len(state.PeerCertificates) == 0 {
		return false
	}
	if _, ok := conn.(syscall.Conn); !ok {
		return false
	}
	entry := &tracked{
		leaf:          state.PeerCertificates[0],
		intermediates: x509.NewCertPool(),
		bundle:        bundle,
		generation:    generation,
		validUntil:    chainsEnd(state.VerifiedChains),
		since:         time.Now(),
	}
	for _, cert := range state.PeerCertificates[1:] {
		entry.intermediates.AddCert(cert)
	}
	t.mu.Lock()
	t.conns[conn] = entry
	n := len(t.conns)
	t.mu.Unlock()
	connectionsTracked.With(t.metrics).Record(float64(n))
	return true
}

// Len is the number of connections tracked.
func (t *tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// check forgets closed connections and closes those whose chain no longer verifies as of now; it returns how
// many it closed. Verification runs outside the lock that handshakes take to track.
func (t *tracker) check(now time.Time) int {
	t.checking.Lock() // one check at a time: entries are only updated here
	defer t.checking.Unlock()
	t.mu.Lock()
	snapshot := make(map[net.Conn]*tracked, len(t.conns))
	for conn, entry := range t.conns {
		snapshot[conn] = entry
	}
	t.mu.Unlock()

	var gone []net.Conn
	closed := 0
	for conn, entry := range snapshot {
		if isClosed(conn) {
			gone = append(gone, conn)
			continue
		}
		pool := entry.bundle.Current()
		if pool.Generation == entry.generation && now.Before(entry.validUntil) {
			continue
		}
		chains, err := verifyClient(entry.leaf, entry.intermediates, pool.Pool, now)
		if err == nil {
			entry.generation = pool.Generation
			entry.validUntil = chainsEnd(chains)
			continue
		}
		_ = conn.Close()
		gone = append(gone, conn)
		closed++
		t.logger.Warn("closed a TLS connection: its client certificate no longer verifies against the current client CA bundle",
			tag.Address(conn.RemoteAddr().String()), tag.NewStringTag("subject", entry.leaf.Subject.String()),
			tag.TLSCertFiles(entry.bundle.Files()), tag.NewDurationTag("age", now.Sub(entry.since)), tag.Error(err))
		connectionsClosed.With(t.metrics).Record(1, bundleTag(entry.bundle.Files()))
	}

	t.mu.Lock()
	for _, conn := range gone {
		delete(t.conns, conn)
	}
	n := len(t.conns)
	t.mu.Unlock()
	connectionsTracked.With(t.metrics).Record(float64(n))
	return closed
}

// verifyClient is crypto/tls's server-side verification of a client chain (RequireAndVerifyClientCert).
func verifyClient(leaf *x509.Certificate, intermediates, roots *x509.CertPool, now time.Time) ([][]*x509.Certificate, error) {
	return leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// chainsEnd is when the last of the chains stops verifying by time alone.
func chainsEnd(chains [][]*x509.Certificate) time.Time {
	var end time.Time
	for _, chain := range chains {
		var chainEnd time.Time
		for i, cert := range chain {
			if i == 0 || cert.NotAfter.Before(chainEnd) {
				chainEnd = cert.NotAfter
			}
		}
		if chainEnd.After(end) {
			end = chainEnd
		}
	}
	return end
}

// isClosed tells a closed connection by its file descriptor (a no-op control call fails once it is closed).
func isClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	return raw.Control(func(uintptr) {}) != nil
}
