package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/metrics"
)

// DefaultInterval is how often the policy file is read again.
const DefaultInterval = 2 * time.Second

// Mapper is a Temporal claim mapper that reads its policy file again every interval and swaps the policy
// atomically when the file's content changed (a ConfigMap volume swaps a `..data` symlink, so the content is
// compared, not the modification time). A missing file at start denies everything but health checks until a
// good file appears; a file that becomes unreadable or invalid later keeps the last good policy in force.
type Mapper struct {
	path     string
	interval time.Duration
	logger   log.Logger
	denials  log.Logger
	metrics  metrics.Handler

	policy atomic.Pointer[Policy]

	mu       sync.Mutex // one reload at a time
	lastSeen string     // sha256 of the content (or the read error) last acted on
	stale    bool

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var _ authorization.ClaimMapper = (*Mapper)(nil)

// NewMapper reads the policy file once (synchronously); Start polls it afterwards.
func NewMapper(path string, interval time.Duration, logger log.Logger, handler metrics.Handler) *Mapper {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if handler == nil {
		handler = metrics.NoopMetricsHandler
	}
	m := &Mapper{
		path:     path,
		interval: interval,
		logger:   logger,
		denials:  log.NewThrottledLogger(logger, func() float64 { return 1 }),
		metrics:  handler,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.policy.Store(&Policy{}) // deny-all until a good file is read
	m.Reload()
	return m
}

// Start polls the file every interval until Stop (a second Start does nothing).
func (m *Mapper) Start() {
	if !m.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer close(m.done)
		ticker := time.NewTicker(m.interval)
		defer ticker.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-ticker.C:
				m.Reload()
			}
		}
	}()
}

// Stop ends the polling started by Start and waits for it; without Start, it keeps a later Start from polling.
func (m *Mapper) Stop() {
	m.stopOnce.Do(func() {
		close(m.stop)
		if !m.started.CompareAndSwap(false, true) { // Start ran: wait for its poller
			<-m.done
		}
	})
}

// Policy is the policy in force.
func (m *Mapper) Policy() *Policy { return m.policy.Load() }

// Stale is true while the file on disk is missing, unreadable or invalid.
func (m *Mapper) Stale() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stale
}

// Reload reads the file; a content (or read error) seen before is not acted on again, so a bad file is
// logged and counted once, not every interval.
func (m *Mapper) Reload() {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, err := os.ReadFile(m.path)
	if err != nil {
		key := "error:" + err.Error()
		if key == m.lastSeen {
			return
		}
		m.lastSeen = key
		m.stale = true
		inForce := m.policy.Load()
		if errors.Is(err, fs.ErrNotExist) && len(inForce.Grants) == 0 {
			m.logger.Warn("authorization policy file missing: denying every request but health checks until it appears",
				tag.NewStringTag("policy-file", m.path))
		} else {
			m.logger.Error("authorization policy file unreadable: the last good policy stays in force",
				tag.NewStringTag("policy-file", m.path), tag.Error(err), tag.NewInt("grants", len(inForce.Grants)))
		}
		recordLoad(m.metrics, resultError, true, len(inForce.Grants))
		return
	}
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	if key == m.lastSeen {
		return
	}
	m.lastSeen = key
	policy, err := Parse(data)
	if err != nil {
		m.stale = true
		inForce := m.policy.Load()
		m.logger.Error("authorization policy file rejected: the last good policy stays in force",
			tag.NewStringTag("policy-file", m.path), tag.NewStringTag("sha256", key), tag.Error(err),
			tag.NewInt("grants", len(inForce.Grants)))
		recordLoad(m.metrics, resultError, true, len(inForce.Grants))
		return
	}
	m.policy.Store(policy)
	m.stale = false
	m.logger.Info("authorization policy loaded", tag.NewStringTag("policy-file", m.path),
		tag.NewInt("grants", len(policy.Grants)), tag.NewStringTag("sha256", key))
	recordLoad(m.metrics, resultOK, false, len(policy.Grants))
}

// GetClaims maps the VERIFIED leaf certificate (never an unverified peer certificate: the frontend may run
// without requireClientAuth) to the union of its grants. No verified chain or no grant: empty claims, no
// error, so the caller gets PermissionDenied "Request unauthorized." and health checks still pass.
func (m *Mapper) GetClaims(authInfo *authorization.AuthInfo) (*authorization.Claims, error) {
	if authInfo == nil {
		return &authorization.Claims{}, nil
	}
	cert := authorization.PeerCert(authInfo.TLSConnection)
	if cert == nil {
		return &authorization.Claims{}, nil
	}
	claims, matched := m.policy.Load().Claims(cert)
	if len(matched) == 0 {
		// Debug: the frontend's readiness probe (a health check, always allowed) may have no grant and calls every 2 s.
		m.denials.Debug("no authorization grant matches the client certificate",
			tag.NewStringTag("subject", Subject(cert)))
	}
	return claims, nil
}
