package authz

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics/metricstest"
)

const interval = 20 * time.Millisecond

// configMapVolume lays files out as the kubelet does: NAME -> ..data/NAME, ..data -> ..<version>; update
// replaces ..data atomically (a rename of a new symlink), so the file's own path never changes.
type configMapVolume struct {
	dir      string
	versions int
}

func newVolume(t *testing.T) *configMapVolume {
	v := &configMapVolume{dir: t.TempDir()}
	if err := os.Symlink(filepath.Join("..data", "policy.json"), v.path()); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *configMapVolume) path() string { return filepath.Join(v.dir, "policy.json") }

func (v *configMapVolume) update(t *testing.T, content string) {
	t.Helper()
	v.versions++
	version := fmt.Sprintf("..2026_12_01_00_00_%02d.%d", v.versions, v.versions)
	if err := os.Mkdir(filepath.Join(v.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, version, "policy.json"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(version, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func grantPolicy(commonName, role string) string {
	return fmt.Sprintf(`{"version": 1, "grants": [{"name": "g", "match": {"commonName": %q}, "namespaces": {"default": %q}}]}`,
		commonName, role)
}

func role(t *testing.T, m *Mapper, commonName string) authorization.Role {
	t.Helper()
	claims, err := m.GetClaims(verified(cn(t, commonName)))
	if err != nil {
		t.Fatal(err)
	}
	return claims.Namespaces["default"]
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 2 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMapperReloadsConfigMapSwap(t *testing.T) {
	volume := newVolume(t)
	volume.update(t, grantPolicy("alice", "reader"))
	m := NewMapper(volume.path(), interval, log.NewNoopLogger(), nil)
	m.Start()
	defer m.Stop()
	if role(t, m, "alice") != authorization.RoleReader || role(t, m, "bob") != 0 {
		t.Fatal("first policy not in force")
	}
	volume.update(t, grantPolicy("bob", "writer"))
	eventually(t, "the swapped policy", func() bool { return role(t, m, "bob") == authorization.RoleWriter })
	if role(t, m, "alice") != 0 {
		t.Error("alice kept her grant after the swap")
	}
}

func TestMapperKeepsLastGoodPolicy(t *testing.T) {
	capture := metricstest.NewCaptureHandler()
	recording := capture.StartCapture()
	defer capture.StopCapture(recording)
	volume := newVolume(t)
	volume.update(t, grantPolicy("alice", "writer"))
	m := NewMapper(volume.path(), interval, log.NewNoopLogger(), capture)
	m.Start()
	defer m.Stop()

	volume.update(t, `{"version": 1, "grants": [{"match": {"commonName": "*"}}]}`) // invalid: a lone *
	eventually(t, "stale", m.Stale)
	if role(t, m, "alice") != authorization.RoleWriter {
		t.Error("the last good policy is not in force")
	}
	if err := os.Remove(filepath.Join(volume.dir, "..data")); err != nil { // unreadable: the file is gone
		t.Fatal(err)
	}
	time.Sleep(3 * interval)
	if !m.Stale() || role(t, m, "alice") != authorization.RoleWriter {
		t.Error("a missing file later must keep the last good policy and stay stale")
	}
	volume.update(t, grantPolicy("alice", "admin"))
	eventually(t, "a good file again", func() bool { return !m.Stale() })
	if role(t, m, "alice") != authorization.RoleAdmin {
		t.Error("the good file is not in force")
	}
	time.Sleep(3 * interval) // unchanged content: no more loads

	snapshot := recording.Snapshot()
	var results []string
	for _, r := range snapshot["temporal_mtls_authorization_policy_loads"] {
		results = append(results, r.Tags["result"])
	}
	if fmt.Sprint(results) != "[ok error error ok]" {
		t.Errorf("loads by result: %v", results)
	}
	stale := snapshot["temporal_mtls_authorization_policy_stale"]
	if len(stale) != 4 || stale[1].Value != 1.0 || stale[3].Value != 0.0 {
		t.Errorf("stale gauge: %v", values(stale))
	}
	grants := snapshot["temporal_mtls_authorization_policy_grants"]
	if len(grants) != 4 || grants[1].Value != 1.0 || grants[3].Value != 1.0 {
		t.Errorf("grants gauge: %v", values(grants))
	}
}

func TestMapperMissingFileDeniesUntilItAppears(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	m := NewMapper(path, interval, log.NewNoopLogger(), nil)
	m.Start()
	defer m.Stop()
	claims, err := m.GetClaims(verified(cn(t, "alice")))
	if err != nil || claims == nil || claims.System != 0 || len(claims.Namespaces) != 0 || !m.Stale() {
		t.Fatalf("missing file: %+v %v stale=%v", claims, err, m.Stale())
	}
	decision := authorize(t, claims, "GetSystemInfo", "")
	if decision != authorization.DecisionAllow {
		t.Error("a health check must pass without a policy")
	}
	if err := os.WriteFile(path+".tmp", []byte(grantPolicy("alice", "writer")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file that appeared", func() bool { return role(t, m, "alice") == authorization.RoleWriter })
}

func TestMapperUsesOnlyTheVerifiedLeaf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(path, []byte(grantPolicy("alice", "admin")), 0o644); err != nil {
		t.Fatal(err)
	}
	m := NewMapper(path, interval, log.NewNoopLogger(), nil)
	alice := cn(t, "alice")
	for name, info := range map[string]*authorization.AuthInfo{
		"unverified peer certificate": unverified(alice),
		"no TLS":                      {AuthToken: "Bearer x"},
		"nil auth info":               nil,
	} {
		claims, err := m.GetClaims(info)
		if err != nil || claims == nil || claims.System != 0 || len(claims.Namespaces) != 0 {
			t.Errorf("%s: %+v %v, want empty claims", name, claims, err)
		}
	}
	if role(t, m, "alice") != authorization.RoleAdmin {
		t.Error("the verified certificate gets nothing")
	}
}

func values(recordings []*metricstest.CapturedRecording) []any {
	var out []any
	for _, r := range recordings {
		out = append(out, r.Value)
	}
	return out
}

func TestMapperStopWithoutStartAndTwice(t *testing.T) {
	m := NewMapper(filepath.Join(t.TempDir(), "none.json"), interval, log.NewNoopLogger(), nil)
	m.Stop()
	m.Stop()
	m.Start() // after Stop: no poller
	started := NewMapper(filepath.Join(t.TempDir(), "none.json"), interval, log.NewNoopLogger(), nil)
	started.Start()
	started.Start()
	started.Stop()
	started.Stop()
}
