package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/rpc/encryption"
)

// mustConfig(t)(p.GetX()) is the config, which must exist.
func mustConfig(t *testing.T) func(*tls.Config, error) *tls.Config {
	return func(cfg *tls.Config, err error) *tls.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if cfg == nil {
			t.Fatal("no TLS config")
		}
		return cfg
	}
}

func mustFail(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the handshake succeeded", what)
	}
}

func mustSucceed(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func dialErr(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	_, err := dial(t, addr, cfg)
	return err
}

// A client config built before a Secret volume swap trusts a server leaf of the new CA after it (and no longer
// one of the removed CA), while Temporal's own client config built at the same time does not.
func TestClientConfigBuiltBeforeSwapTrustsNewCA(t *testing.T) {
	oldCA, newCA := newAuthority(t, "old CA"), newAuthority(t, "new CA")
	self := oldCA.issue(t, "internode.test")
	volume := newSecretVolume(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": oldCA.pem})
	p := newTestProvider(t, internodeSettings(volume.dir, "internode.test"))
	client := mustConfig(t)(p.GetInternodeClientConfig())
	stockClient := mustConfig(t)(p.stock.GetInternodeClientConfig())

	oldServer := echoServer(t, plainServer(oldCA.issue(t, "internode.test")))
	newServer := echoServer(t, plainServer(newCA.issue(t, "internode.test")))
	mustSucceed(t, "old CA's server before the swap", dialErr(t, oldServer, client))
	mustFail(t, "new CA's server before the swap", dialErr(t, newServer, client))

	volume.write(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": newCA.pem})
	mustFail(t, "new CA's server before the files are read again", dialErr(t, newServer, client))
	p.Refresh()
	mustSucceed(t, "new CA's server after the swap", dialErr(t, newServer, client))
	var verr *tls.CertificateVerificationError
	if err := dialErr(t, oldServer, client); !errors.As(err, &verr) {
		t.Fatalf("old CA's server after its removal: want a certificate verification error, got %v", err)
	}
	mustFail(t, "Temporal's own client config after the swap", dialErr(t, newServer, stockClient))
	if again := mustConfig(t)(p.GetInternodeClientConfig()); again != client {
		t.Fatal("the client config is built once")
	}
}

// The server name is still verified, before and after a reload; disableHostVerification skips only the name.
func TestClientHostnameStillVerified(t *testing.T) {
	oldCA, newCA := newAuthority(t, "old CA"), newAuthority(t, "new CA")
	self := oldCA.issue(t, "internode.test")
	volume := newSecretVolume(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": oldCA.pem})
	p := newTestProvider(t, internodeSettings(volume.dir, "other.test"))
	client := mustConfig(t)(p.GetInternodeClientConfig())
	oldServer := echoServer(t, plainServer(oldCA.issue(t, "internode.test")))
	newServer := echoServer(t, plainServer(newCA.issue(t, "internode.test")))

	var hostErr x509.HostnameError
	if err := dialErr(t, oldServer, client); !errors.As(err, &hostErr) {
		t.Fatalf("name mismatch before the swap: want a hostname error, got %v", err)
	}
	volume.write(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": bundleOf(oldCA, newCA)})
	p.Refresh()
	if err := dialErr(t, newServer, client); !errors.As(err, &hostErr) {
		t.Fatalf("name mismatch after the swap: want a hostname error, got %v", err)
	}

	// An IP address as client.serverName is checked against the IP SANs.
	settings := internodeSettings(volume.dir, "127.0.0.2")
	ipClient := mustConfig(t)(newTestProvider(t, settings).GetInternodeClientConfig())
	mustFail(t, "IP server name mismatch", dialErr(t, newServer, ipClient))
	settings = internodeSettings(volume.dir, "127.0.0.1")
	ipClient = mustConfig(t)(newTestProvider(t, settings).GetInternodeClientConfig())
	mustSucceed(t, "IP server name", dialErr(t, newServer, ipClient))

	// disableHostVerification: the name is not checked, the chain still is (Temporal's own config checks nothing).
	settings = internodeSettings(volume.dir, "other.test")
	settings.Internode.Client.DisableHostVerification = true
	lax := newTestProvider(t, settings)
	laxClient := mustConfig(t)(lax.GetInternodeClientConfig())
	mustSucceed(t, "disableHostVerification, name mismatch", dialErr(t, newServer, laxClient))
	strangerServer := echoServer(t, plainServer(newAuthority(t, "stranger CA").issue(t, "internode.test")))
	mustFail(t, "disableHostVerification, unknown CA", dialErr(t, strangerServer, laxClient))
	mustSucceed(t, "Temporal's config with disableHostVerification, unknown CA",
		dialErr(t, strangerServer, mustConfig(t)(lax.stock.GetInternodeClientConfig())))
}

// A client without client.serverName (the name would be the dialed address's) keeps Temporal's config.
func TestClientWithoutServerNameIsTemporals(t *testing.T) {
	ca := newAuthority(t, "CA")
	self := ca.issue(t, "internode.test")
	volume := newSecretVolume(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": ca.pem})
	p := newTestProvider(t, internodeSettings(volume.dir, ""))
	client := mustConfig(t)(p.GetInternodeClientConfig())
	if client.InsecureSkipVerify || client.RootCAs == nil || client.VerifyConnection != nil {
		t.Fatal("want Temporal's own client config")
	}
}

// A server config built before the swaps: a CA appended to the bundle (after its first certificate, which
// Temporal's change detection alone compares) is trusted, a removed one is refused, for new handshakes.
func TestServerConfigRefusesRemovedCAAcceptsNew(t *testing.T) {
	oldCA, newCA := newAuthority(t, "old CA"), newAuthority(t, "new CA")
	dir := t.TempDir()
	self := oldCA.issue(t, "internode.test")
	for name, data := range map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": oldCA.pem} {
		replaceFile(t, filepath.Join(dir, name), data)
	}
	p := newTestProvider(t, internodeSettings(dir, "internode.test"))
	server := echoServer(t, mustConfig(t)(p.GetInternodeServerConfig()))
	oldClient := plainClient(oldCA.issue(t, "old client"), "internode.test", oldCA)
	newClient := plainClient(newCA.issue(t, "new client"), "internode.test", oldCA)

	mustSucceed(t, "old CA's client", dialErr(t, server, oldClient))
	mustFail(t, "new CA's client before the swap", dialErr(t, server, newClient))

	replaceFile(t, filepath.Join(dir, "ca.crt"), bundleOf(oldCA, newCA))
	p.Refresh()
	mustSucceed(t, "old CA's client, both CAs", dialErr(t, server, oldClient))
	mustSucceed(t, "new CA's client, both CAs", dialErr(t, server, newClient))

	replaceFile(t, filepath.Join(dir, "ca.crt"), newCA.pem)
	p.Refresh()
	mustFail(t, "old CA's client after its removal", dialErr(t, server, oldClient))
	mustSucceed(t, "new CA's client after the old one's removal", dialErr(t, server, newClient))
	mustFail(t, "a client without a certificate", dialErr(t, server, plainClient(nil, "internode.test", oldCA)))
}

// Why the server side is overridden too: Temporal's provider, even refreshing, misses a CA appended after the
// first certificate of a bundle (its change detection parses the first certificate of each file only).
func TestTemporalServerConfigMissesAppendedCA(t *testing.T) {
	oldCA, newCA := newAuthority(t, "old CA"), newAuthority(t, "new CA")
	dir := t.TempDir()
	self := oldCA.issue(t, "internode.test")
	for name, data := range map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": oldCA.pem} {
		replaceFile(t, filepath.Join(dir, name), data)
	}
	settings := internodeSettings(dir, "internode.test")
	settings.RefreshInterval = 10 * time.Millisecond
	stock, err := encryption.NewTLSConfigProviderFromConfig(settings, metrics.NoopMetricsHandler, log.NewNoopLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	server := echoServer(t, mustConfig(t)(stock.GetInternodeServerConfig()))
	newClient := plainClient(newCA.issue(t, "new client"), "internode.test", oldCA)
	replaceFile(t, filepath.Join(dir, "ca.crt"), bundleOf(oldCA, newCA))
	time.Sleep(100 * time.Millisecond) // ten refresh intervals
	mustFail(t, "Temporal's server config, CA appended", dialErr(t, server, newClient))
}

// A bundle that does not read or parse completely keeps the last good pool, on both sides; a good one then
// applies.
func TestMalformedBundleKeepsLastGoodPool(t *testing.T) {
	oldCA, newCA := newAuthority(t, "old CA"), newAuthority(t, "new CA")
	self := oldCA.issue(t, "internode.test")
	volume := newSecretVolume(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": oldCA.pem})
	p := newTestProvider(t, internodeSettings(volume.dir, "internode.test"))
	client := mustConfig(t)(p.GetInternodeClientConfig())
	server := echoServer(t, mustConfig(t)(p.GetInternodeServerConfig()))
	oldServer := echoServer(t, plainServer(oldCA.issue(t, "internode.test")))
	oldClient := plainClient(oldCA.issue(t, "old client"), "internode.test", oldCA)
	bundle, err := p.bundle([]string{volume.path("ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	good := bundle.Current()

	both := bundleOf(newCA, oldCA)
	damaged := append([]byte(nil), both...)
	damaged[100] = '*' // inside the first block's base64: pem.Decode would skip the block
	for name, data := range map[string][]byte{
		"garbage":        []byte("not a certificate\n"),
		"empty":          {},
		"truncated":      both[:len(both)-40],
		"damaged block":  damaged,
		"only a key":     self.keyPEM,
		"bad DER":        []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"missing (file)": nil,
	} {
		t.Run(name, func(t *testing.T) {
			if data == nil {
				if err := os.Remove(volume.path("ca.crt")); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := os.Symlink(filepath.Join("..data", "ca.crt"), volume.path("ca.crt")); err != nil {
						t.Fatal(err)
					}
				}()
			} else {
				volume.write(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": data})
			}
			p.Refresh()
			if !bundle.Stale() || bundle.Current() != good {
				t.Fatal("want the last good pool in force, marked stale")
			}
			mustSucceed(t, "client, last good pool", dialErr(t, oldServer, client))
			mustSucceed(t, "server, last good pool", dialErr(t, server, oldClient))
		})
	}

	volume.write(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": newCA.pem})
	p.Refresh()
	if bundle.Stale() || bundle.Current().Generation != good.Generation+1 {
		t.Fatal("want the new bundle in force")
	}
	mustFail(t, "client after a good bundle without the old CA", dialErr(t, oldServer, client))
	mustFail(t, "server after a good bundle without the old CA", dialErr(t, server, oldClient))
}

// Per-host overrides of the frontend keep their own client CA bundle, reloaded the same way.
func TestPerHostOverrideBundle(t *testing.T) {
	mainCA, hostCA, nextCA := newAuthority(t, "main CA"), newAuthority(t, "host CA"), newAuthority(t, "next CA")
	mainDir, hostDir := t.TempDir(), t.TempDir()
	mainLeaf, hostLeaf := mainCA.issue(t, "frontend.test"), hostCA.issue(t, "other.test")
	for dir, files := range map[string]map[string][]byte{
		mainDir: {"tls.crt": mainLeaf.certPEM, "tls.key": mainLeaf.keyPEM, "ca.crt": mainCA.pem},
		hostDir: {"tls.crt": hostLeaf.certPEM, "tls.key": hostLeaf.keyPEM, "ca.crt": hostCA.pem},
	} {
		for name, data := range files {
			replaceFile(t, filepath.Join(dir, name), data)
		}
	}
	server := func(dir string) config.ServerTLS {
		return config.ServerTLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
			ClientCAFiles: []string{filepath.Join(dir, "ca.crt")}, RequireClientAuth: true}
	}
	p := newTestProvider(t, config.RootTLS{Frontend: config.GroupTLS{
		Server:           server(mainDir),
		PerHostOverrides: map[string]config.ServerTLS{"Other.Test": server(hostDir)},
	}})
	addr := echoServer(t, mustConfig(t)(p.GetFrontendServerConfig()))
	mainClient := mainCA.issue(t, "main client")
	hostClient, nextClient := hostCA.issue(t, "host client"), nextCA.issue(t, "next client")

	mustSucceed(t, "main CA's client, main name", dialErr(t, addr, plainClient(mainClient, "frontend.test", mainCA)))
	mustFail(t, "host CA's client, main name", dialErr(t, addr, plainClient(hostClient, "frontend.test", mainCA)))
	mustSucceed(t, "host CA's client, host name", dialErr(t, addr, plainClient(hostClient, "other.test", hostCA)))
	mustFail(t, "main CA's client, host name", dialErr(t, addr, plainClient(mainClient, "other.test", hostCA)))

	replaceFile(t, filepath.Join(hostDir, "ca.crt"), nextCA.pem)
	p.Refresh()
	mustFail(t, "host CA's client after its removal", dialErr(t, addr, plainClient(hostClient, "other.test", hostCA)))
	mustSucceed(t, "next CA's client, host name", dialErr(t, addr, plainClient(nextClient, "other.test", hostCA)))
	mustSucceed(t, "main CA's client, main name, unchanged", dialErr(t, addr, plainClient(mainClient, "frontend.test", mainCA)))
}

// Start's loop reads the files again on its own.
func TestStartReloadsEveryInterval(t *testing.T) {
	oldCA, newCA := newAuthority(t, "old CA"), newAuthority(t, "new CA")
	self := oldCA.issue(t, "internode.test")
	volume := newSecretVolume(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": oldCA.pem})
	p, err := NewProvider(internodeSettings(volume.dir, "internode.test"), 20*time.Millisecond, log.NewNoopLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := mustConfig(t)(p.GetInternodeClientConfig())
	p.Start()
	p.Start()
	defer p.Stop()
	newServer := echoServer(t, plainServer(newCA.issue(t, "internode.test")))
	volume.write(t, map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM, "ca.crt": newCA.pem})
	deadline := time.Now().Add(3 * time.Second)
	for dialErr(t, newServer, client) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the new CA is not trusted 3 s after the swap")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop()
	p.Stop()
}

func TestStopWithoutStart(t *testing.T) {
	p, err := NewProvider(config.RootTLS{}, 0, log.NewNoopLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Interval() != DefaultInterval {
		t.Fatalf("interval %v", p.Interval())
	}
	p.Stop()
	p.Start() // does nothing after Stop
	p.Stop()
	if cfg, err := p.GetInternodeClientConfig(); cfg != nil || err != nil {
		t.Fatalf("no TLS configured: want no config, got %v, %v", cfg, err)
	}
}
