package tlsreload

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

type rotation struct {
	oldCA, newCA *authority
	dir          string
	p            *Provider
}

// newRotation: an internode section whose client CA bundle holds both CAs (the middle of a rotation).
func newRotation(t *testing.T) *rotation {
	r := &rotation{oldCA: newAuthority(t, "old CA"), newCA: newAuthority(t, "new CA"), dir: t.TempDir()}
	self := r.newCA.issue(t, "internode.test")
	for name, data := range map[string][]byte{"tls.crt": self.certPEM, "tls.key": self.keyPEM,
		"ca.crt": bundleOf(r.newCA, r.oldCA)} {
		replaceFile(t, filepath.Join(r.dir, name), data)
	}
	r.p = newTestProvider(t, internodeSettings(r.dir, "internode.test"))
	return r
}

func (r *rotation) removeOldCA(t *testing.T) {
	replaceFile(t, filepath.Join(r.dir, "ca.crt"), r.newCA.pem) // the first certificate stays the same
}

// An established connection authenticated by a CA is closed at the first Refresh after the CA left the
// bundle; one authenticated by a CA still in it stays open; closed connections are forgotten.
func TestRemovedCAClosesEstablishedConnection(t *testing.T) {
	r := newRotation(t)
	addr := echoServer(t, mustConfig(t)(r.p.GetInternodeServerConfig()))
	oldSession, err := dial(t, addr, plainClient(r.oldCA.issue(t, "old client"), "internode.test", r.newCA))
	mustSucceed(t, "old CA's client", err)
	newSession, err := dial(t, addr, plainClient(r.newCA.issue(t, "new client"), "internode.test", r.newCA))
	mustSucceed(t, "new CA's client", err)
	if closed := r.p.Refresh(); closed != 0 || r.p.TrackedConnections() != 2 {
		t.Fatalf("nothing changed: closed %d, tracked %d", closed, r.p.TrackedConnections())
	}

	r.removeOldCA(t)
	if closed := r.p.Refresh(); closed != 1 {
		t.Fatalf("closed %d connections, want the old CA's one", closed)
	}
	mustFail(t, "old CA's established connection", oldSession.roundTrip())
	mustSucceed(t, "new CA's established connection", newSession.roundTrip())
	if n := r.p.TrackedConnections(); n != 1 {
		t.Fatalf("tracked %d", n)
	}

	_ = newSession.conn.Close()
	deadline := time.Now().Add(3 * time.Second)
	for r.p.Refresh(); r.p.TrackedConnections() != 0; r.p.Refresh() {
		if time.Now().After(deadline) {
			t.Fatal("a connection closed by its peer is still tracked")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that resumes a TLS session (its ticket issued while its CA was trusted) is refused after the CA's
// removal: crypto/tls checks a resumed session's chain against the per-handshake config's ClientCAs, which is
// the current pool.
func TestResumedSessionVerifiedAgainstCurrentPool(t *testing.T) {
	r := newRotation(t)
	addr := echoServer(t, mustConfig(t)(r.p.GetInternodeServerConfig()))
	client := plainClient(r.oldCA.issue(t, "old client"), "internode.test", r.newCA)
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	first, err := dial(t, addr, client)
	mustSucceed(t, "first connection", err)
	_ = first.conn.Close()
	second, err := dial(t, addr, client)
	mustSucceed(t, "resumed connection", err)
	if !second.conn.ConnectionState().DidResume {
		t.Fatal("the second connection did not resume: the test proves nothing")
	}
	_ = second.conn.Close()

	r.removeOldCA(t)
	r.p.Refresh()
	mustFail(t, "resumption after the CA's removal", dialErr(t, addr, client))
}

// The same through gRPC (Temporal's internode transport): server and client configs from the provider, a
// long-lived connection of the old CA ends after its removal and the client cannot reconnect with it.
func TestGRPCConnectionEndsAfterCARemoval(t *testing.T) {
	r := newRotation(t)
	server := grpc.NewServer(grpc.Creds(credentials.NewTLS(mustConfig(t)(r.p.GetInternodeServerConfig()))))
	healthpb.RegisterHealthServer(server, health.NewServer())
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)

	connect := func(cfg *tls.Config) healthpb.HealthClient {
		conn, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return healthpb.NewHealthClient(conn)
	}
	check := func(client healthpb.HealthClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// The old CA's member uses a plain client; the new CA's member this provider's own internode client config
	// (its leaf is the new CA's).
	oldMember := connect(plainClient(r.oldCA.issue(t, "old member"), "internode.test", r.newCA))
	newMember := connect(mustConfig(t)(r.p.GetInternodeClientConfig()))
	mustSucceed(t, "old CA's member", check(oldMember))
	mustSucceed(t, "new CA's member", check(newMember))

	r.removeOldCA(t)
	if closed := r.p.Refresh(); closed != 1 {
		t.Fatalf("closed %d connections, want the old CA's one", closed)
	}
	err = check(oldMember)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("old CA's member after the removal: want Unavailable, got %v", err)
	}
	mustSucceed(t, "new CA's member after the removal", check(newMember))
}
