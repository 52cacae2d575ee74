package authz

import (
	"crypto/x509/pkix"
	"testing"

	"go.temporal.io/server/common/authorization"
)

func mustParse(t *testing.T, raw string) *Policy {
	t.Helper()
	p, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClaimsUnion(t *testing.T) {
	p := mustParse(t, `{"version": 1, "grants": [
	  {"name": "a", "match": {"commonName": "*.example.com"}, "system": "reader", "namespaces": {"default": "worker", "orders": "reader"}},
	  {"name": "b", "match": {"organization": "Example"}, "namespaces": {"default": "writer"}},
	  {"name": "c", "match": {"organizationalUnit": "Ops"}, "system": "writer", "namespaces": {"Orders": "admin"}},
	  {"name": "d", "match": {"commonName": "nobody"}, "system": "admin"}]}`)
	cert := leaf(t, pkix.Name{CommonName: "api.example.com", Organization: []string{"Example"},
		OrganizationalUnit: []string{"Ops"}}, nil, nil, nil, nil)
	claims, matched := p.Claims(cert)
	if len(matched) != 3 || matched[0] != "a" || matched[2] != "c" {
		t.Errorf("matched %v", matched)
	}
	if claims.Subject != "api.example.com" {
		t.Errorf("subject %q", claims.Subject)
	}
	if claims.System != authorization.RoleReader|authorization.RoleWriter {
		t.Errorf("system %v", claims.System)
	}
	want := map[string]authorization.Role{
		"default": authorization.RoleWorker | authorization.RoleWriter,
		"orders":  authorization.RoleReader,
		"Orders":  authorization.RoleAdmin, // namespace names are case-sensitive, as Temporal compares them
	}
	if len(claims.Namespaces) != len(want) {
		t.Errorf("namespaces %v", claims.Namespaces)
	}
	for ns, role := range want {
		if claims.Namespaces[ns] != role {
			t.Errorf("namespace %s: %v, want %v", ns, claims.Namespaces[ns], role)
		}
	}
}

func TestClaimsNoGrant(t *testing.T) {
	p := mustParse(t, `{"version": 1, "grants": [{"name": "a", "match": {"commonName": "a"}, "system": "admin"}]}`)
	for name, claims := range map[string]*authorization.Claims{
		"no grant matches": first(p.Claims(cn(t, "b"))),
		"no certificate":   first(p.Claims(nil)),
		"nil policy":       first((*Policy)(nil).Claims(cn(t, "a"))),
	} {
		if claims == nil || claims.System != 0 || len(claims.Namespaces) != 0 || claims.Subject != "" {
			t.Errorf("%s: %+v, want empty claims", name, claims)
		}
	}
}

func TestSubjectFallsBackToURI(t *testing.T) {
	uri := "spiffe://temporal-mtls.dev/ns/demo/cluster/demo/client/hello"
	p := mustParse(t, `{"version": 1, "grants": [{"match": {"uri": "`+uri+`"}, "namespaces": {"default": "writer"}}]}`)
	claims, _ := p.Claims(leaf(t, pkix.Name{}, nil, []string{uri}, nil, nil))
	if claims.Subject != uri || claims.Namespaces["default"] != authorization.RoleWriter {
		t.Errorf("%+v", claims)
	}
}

func first(claims *authorization.Claims, _ []string) *authorization.Claims { return claims }
