// Package tlsreload is a Temporal TLS config provider (encryption.TLSConfigProvider, for
// temporal.WithTLSConfigFactory) whose CA bundles reload for new handshakes without a restart, and that ends
// server-side connections a removed CA authenticated.
//
// It wraps Temporal's own local store provider (built from the same config.RootTLS, so certificates, keys,
// refreshInterval's leaf reload, per-host overrides, expiration checks and validation stay Temporal's) and
// changes only what that provider gets wrong for a CA rotation:
//
//   - Client configs (internode, frontend/system worker, remote clusters): Temporal puts the root pool in
//     tls.Config.RootCAs once, when the config is built. Here, for a client whose roots come from rootCaFiles,
//     crypto/tls's verification is replaced (InsecureSkipVerify with VerifyConnection, which crypto/tls runs on
//     every full handshake and resumption) by the same x509 verification against the CURRENT pool, with the
//     server name checked against client.serverName. Verification is never skipped: with
//     disableHostVerification only the name check is (stock Temporal then verifies nothing at all).
//   - Server configs: Temporal takes the client-CA pool per handshake (GetConfigForClient), but from a cache
//     refreshed only with refreshInterval set, and it compares only the first certificate of each file, so a CA
//     appended to or removed after the first in a bundle goes unnoticed. Here ClientCAs is the current pool of
//     clientCaFiles (per-host overrides: the override's files), and every connection authenticated by a client
//     certificate is tracked until its chain stops verifying. (A resumed TLS session is checked against that
//     ClientCAs by crypto/tls itself, go.dev/issue/77376; TestResumedSessionVerifiedAgainstCurrentPool.)
//
// Bundles are read again every interval (Refresh); all certificates of every file are parsed, and a bundle
// that does not read or parse completely keeps the last good pool.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/rpc/encryption"
)

// DefaultInterval is how often the CA files are read again (and server-side connections checked).
const DefaultInterval = 2 * time.Second

// Provider is the reloading TLS config provider. NewProvider reads nothing; bundles are read when the server
// first asks for a config that uses them (as the stock provider does), then every interval after Start.
type Provider struct {
	stock    encryption.TLSConfigProvider
	settings config.RootTLS
	interval time.Duration
	logger   log.Logger
	metrics  metrics.Handler
	conns    *tracker

	mu             sync.Mutex
	bundles        map[string]*Bundle
	internodeSrv   *tls.Config
	internodeCli   *tls.Config
	frontendSrv    *tls.Config
	frontendCli    *tls.Config
	remoteClusters map[string]*tls.Config

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
}

var _ encryption.TLSConfigProvider = (*Provider)(nil)

// NewProvider builds Temporal's provider from settings (validating them as Temporal does) and wraps it.
// interval <= 0 is DefaultInterval; handler may be nil.
func NewProvider(settings config.RootTLS, interval time.Duration, logger log.Logger, handler metrics.Handler) (*Provider, error) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if handler == nil {
		handler = metrics.NoopMetricsHandler
	}
	stock, err := encryption.NewTLSConfigProviderFromConfig(settings, handler, logger, nil)
	if err != nil {
		return nil, err
	}
	return &Provider{
		stock:          stock,
		settings:       settings,
		interval:       interval,
		logger:         logger,
		metrics:        handler,
		conns:          newTracker(logger, handler),
		bundles:        make(map[string]*Bundle),
		remoteClusters: make(map[string]*tls.Config),
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
	}, nil
}

// Interval is how often Start's loop runs Refresh.
func (p *Provider) Interval() time.Duration { return p.interval }

// Start runs Refresh every interval until Stop (a second Start does nothing).
func (p *Provider) Start() {
	p.startOnce.Do(func() {
		go func() {
			defer close(p.done)
			ticker := time.NewTicker(p.interval)
			defer ticker.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-ticker.C:
					p.Refresh()
				}
			}
		}()
	})
}

// Stop ends Start's loop and waits for it; safe without Start and twice.
func (p *Provider) Stop() {
	p.stopOnce.Do(func() {
		close(p.stop)
		started := true
		p.startOnce.Do(func() { started = false; close(p.done) })
		if started {
			<-p.done
		}
	})
}

// Refresh reads every bundle in use again, then closes the server-side connections whose client chain no
// longer verifies against its bundle's (now current) pool; it returns how many it closed.
func (p *Provider) Refresh() int {
	p.mu.Lock()
	bundles := make([]*Bundle, 0, len(p.bundles))
	for _, b := range p.bundles {
		bundles = append(bundles, b)
	}
	p.mu.Unlock()
	for _, b := range bundles {
		b.Reload()
	}
	return p.conns.check(time.Now())
}

// TrackedConnections is the number of open server-side connections being checked.
func (p *Provider) TrackedConnections() int { return p.conns.Len() }

// bundle is the shared Bundle of a file list (an internode server and client reading the same ca.crt read it
// once per interval); the first use reads it.
func (p *Provider) bundle(files []string) (*Bundle, error) {
	key := strings.Join(files, "\x00")
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.bundles[key]; ok {
		return b, nil
	}
	b, err := newBundle(files, p.logger, p.metrics)
	if err != nil {
		return nil, err
	}
	p.bundles[key] = b
	return b, nil
}

// cached returns *slot, built once by build (outside p.mu: build reads bundles).
func (p *Provider) cached(slot **tls.Config, build func() (*tls.Config, error)) (*tls.Config, error) {
	p.mu.Lock()
	if *slot != nil {
		defer p.mu.Unlock()
		return *slot, nil
	}
	p.mu.Unlock()
	cfg, err := build()
	if err != nil || cfg == nil {
		return cfg, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if *slot == nil {
		*slot = cfg
	}
	return *slot, nil
}

func (p *Provider) GetInternodeClientConfig() (*tls.Config, error) {
	return p.cached(&p.internodeCli, func() (*tls.Config, error) {
		return p.client("internode", p.stock.GetInternodeClientConfig, &p.settings.Internode.Client)
	})
}

func (p *Provider) GetFrontendClientConfig() (*tls.Config, error) {
	client := &p.settings.Frontend.Client
	if isSystemWorker(&p.settings) {
		client = &p.settings.SystemWorker.Client
	}
	return p.cached(&p.frontendCli, func() (*tls.Config, error) {
		return p.client("frontend", p.stock.GetFrontendClientConfig, client)
	})
}

func (p *Provider) GetRemoteClusterClientConfig(hostname string) (*tls.Config, error) {
	group, ok := p.settings.RemoteClusters[hostname]
	if !ok {
		return p.stock.GetRemoteClusterClientConfig(hostname)
	}
	p.mu.Lock()
	cfg, ok := p.remoteClusters[hostname]
	p.mu.Unlock()
	if ok {
		return cfg, nil
	}
	cfg, err := p.client("remote cluster "+hostname, func() (*tls.Config, error) {
		return p.stock.GetRemoteClusterClientConfig(hostname)
	}, &group.Client)
	if err != nil || cfg == nil {
		return cfg, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing, ok := p.remoteClusters[hostname]; ok {
		return existing, nil
	}
	p.remoteClusters[hostname] = cfg
	return cfg, nil
}

func (p *Provider) GetInternodeServerConfig() (*tls.Config, error) {
	return p.cached(&p.internodeSrv, func() (*tls.Config, error) {
		return p.server("internode", p.stock.GetInternodeServerConfig, &p.settings.Internode)
	})
}

func (p *Provider) GetFrontendServerConfig() (*tls.Config, error) {
	return p.cached(&p.frontendSrv, func() (*tls.Config, error) {
		return p.server("frontend", p.stock.GetFrontendServerConfig, &p.settings.Frontend)
	})
}

// GetExpiringCerts is Temporal's (its expiration metrics and logs are unchanged).
func (p *Provider) GetExpiringCerts(timeWindow time.Duration) (encryption.CertExpirationMap, encryption.CertExpirationMap, error) {
	return p.stock.GetExpiringCerts(timeWindow)
}

// client is Temporal's client config with the root pool taken per handshake. A client whose roots are not files
// (rootCaData, or none: the system roots) has nothing to reload and stays Temporal's; so does one that verifies
// the host name without a client.serverName (the name would be the dial target's, which crypto/tls does not
// pass to VerifyConnection for an IP address).
func (p *Provider) client(name string, stock func() (*tls.Config, error), client *config.ClientTLS) (*tls.Config, error) {
	base, err := stock()
	if err != nil || base == nil {
		return base, err
	}
	if len(client.RootCAFiles) == 0 {
		return base, nil
	}
	verifyHost := !client.DisableHostVerification
	if verifyHost && client.ServerName == "" {
		p.logger.Warn("reloading TLS: this client's root CAs are NOT reloaded without a restart: set client.serverName",
			tag.NewStringTag("client", name), tag.TLSCertFiles(client.RootCAFiles))
		return base, nil
	}
	bundle, err := p.bundle(client.RootCAFiles)
	if err != nil {
		return nil, fmt.Errorf("failed to load client ca: %w", err)
	}
	cfg := base.Clone()
	cfg.RootCAs = nil
	// crypto/tls's own verification (static RootCAs) is replaced by VerifyConnection's: the same x509
	// verification against the current pool, on every handshake. Nothing is accepted unverified.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = verifyServer(bundle, client.ServerName, verifyHost)
	return cfg, nil
}

// verifyServer is crypto/tls's client-side verification of the server's chain, against the bundle's current
// pool, and of the server name when verifyHost.
func verifyServer(bundle *Bundle, serverName string, verifyHost bool) func(tls.ConnectionState) error {
	return func(state tls.ConnectionState) error {
		if len(state.PeerCertificates) == 0 {
			return errors.New("tls: the server presented no certificate")
		}
		opts := x509.VerifyOptions{Roots: bundle.Current().Pool, Intermediates: x509.NewCertPool()}
		if verifyHost {
			opts.DNSName = serverName
		}
		for _, cert := range state.PeerCertificates[1:] {
			opts.Intermediates.AddCert(cert)
		}
		if _, err := state.PeerCertificates[0].Verify(opts); err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: state.PeerCertificates, Err: err}
		}
		return nil
	}
}

// server is Temporal's server config whose per-handshake config (Temporal's GetConfigForClient: its certificate,
// client auth and per-host override) gets the current pool of the matching clientCaFiles.
func (p *Provider) server(name string, stock func() (*tls.Config, error), group *config.GroupTLS) (*tls.Config, error) {
	base, err := stock()
	if err != nil || base == nil || base.GetConfigForClient == nil {
		return base, err
	}
	// The bundles are read now, so a bad file fails the server's start as it does for the stock provider.
	// Temporal's per-host lookup: the override of the lower-cased SNI name, else the group's server section.
	// An override without clientCaFiles maps to nil (Temporal's pool is right: static or none).
	byHost := make(map[string]*Bundle, len(group.PerHostOverrides))
	for host, override := range group.PerHostOverrides {
		var b *Bundle
		if len(override.ClientCAFiles) > 0 {
			if b, err = p.bundle(override.ClientCAFiles); err != nil {
				return nil, fmt.Errorf("failed to fetch client CAs for %s: %w", host, err)
			}
		}
		byHost[strings.ToLower(host)] = b
	}
	var defaultBundle *Bundle
	if len(group.Server.ClientCAFiles) > 0 {
		if defaultBundle, err = p.bundle(group.Server.ClientCAFiles); err != nil {
			return nil, fmt.Errorf("failed to fetch client CAs: %w", err)
		}
	}
	stockForClient := base.GetConfigForClient
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		forClient, err := stockForClient(hello)
		if err != nil || forClient == nil || forClient.ClientAuth != tls.RequireAndVerifyClientCert {
			return forClient, err
		}
		bundle := defaultBundle
		if b, ok := byHost[strings.ToLower(hello.ServerName)]; ok {
			bundle = b
		}
		if bundle == nil { // clientCaData: static, Temporal's pool is right
			return forClient, nil
		}
		pool := bundle.Current()
		forClient = forClient.Clone()
		forClient.ClientCAs = pool.Pool
		conn := hello.Conn
		stockVerify := forClient.VerifyConnection
		forClient.VerifyConnection = func(state tls.ConnectionState) error {
			if stockVerify != nil {
				if err := stockVerify(state); err != nil {
					return err
				}
			}
			p.conns.track(conn, state, bundle, pool.Generation)
			return nil
		}
		return forClient, nil
	}
	p.logger.Info("reloading TLS: server config takes its client CAs from the current bundle",
		tag.NewStringTag("server", name))
	return cfg, nil
}

// isSystemWorker is Temporal's (unexported) choice between the systemWorker section and the legacy
// frontend.client one for the frontend client config.
func isSystemWorker(settings *config.RootTLS) bool {
	return settings.SystemWorker.CertData != "" || settings.SystemWorker.CertFile != "" ||
		len(settings.SystemWorker.Client.RootCAData) > 0 || len(settings.SystemWorker.Client.RootCAFiles) > 0 ||
		settings.SystemWorker.Client.ForceTLS
}
