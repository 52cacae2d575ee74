package authz

import (
	"strings"
	"testing"

	"go.temporal.io/server/common/authorization"
)

// The contract's example (the operator writes this shape).
const examplePolicy = `{"version": 1,
 "grants": [
  {"name": "TemporalClusterClient demo/hello",
   "match": {"uri": "spiffe://temporal-mtls.dev/ns/demo/cluster/demo/client/hello"},
   "system": "none",
   "namespaces": {"default": "writer"}},
  {"name": "TemporalNamespace demo/orders filter 0",
   "match": {"commonName": "*.orders.example.com", "organization": "Example", "organizationalUnit": "Payments", "subjectAlternativeName": "worker-*"},
   "namespaces": {"orders": "reader"}},
  {"name": "operator", "match": {"sha256": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"}, "system": "admin"}
 ]}`

func TestParseExample(t *testing.T) {
	p, err := Parse([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Grants) != 3 {
		t.Fatalf("got %d grants", len(p.Grants))
	}
	hello, orders, operator := p.Grants[0], p.Grants[1], p.Grants[2]
	if hello.Name != "TemporalClusterClient demo/hello" || hello.System != authorization.RoleUndefined ||
		hello.Namespaces["default"] != authorization.RoleWriter || hello.Match.URI == "" {
		t.Errorf("hello: %+v", hello)
	}
	if orders.System != authorization.RoleUndefined || orders.Namespaces["orders"] != authorization.RoleReader ||
		orders.Match.CommonName == nil || orders.Match.SubjectAlternativeName == nil {
		t.Errorf("orders: %+v", orders)
	}
	if operator.System != authorization.RoleAdmin || len(operator.Namespaces) != 0 ||
		operator.Match.SHA256 != strings.Repeat("abcdef0123456789", 4) {
		t.Errorf("operator: %+v", operator)
	}
}

func TestParseRoles(t *testing.T) {
	for role, want := range map[string]authorization.Role{"none": 0, "reader": 2, "writer": 4, "admin": 8} {
		p, err := Parse([]byte(`{"version": 1, "grants": [{"match": {"commonName": "a"}, "system": "` + role + `"}]}`))
		if err != nil || p.Grants[0].System != want {
			t.Errorf("system %s: %v %v", role, p, err)
		}
	}
	for role, want := range map[string]authorization.Role{"worker": 1, "reader": 2, "writer": 4, "admin": 8} {
		p, err := Parse([]byte(`{"version": 1, "grants": [{"match": {"commonName": "a"}, "namespaces": {"Orders": "` + role + `"}}]}`))
		if err != nil || p.Grants[0].Namespaces["Orders"] != want {
			t.Errorf("namespace role %s: %v %v", role, p, err)
		}
	}
	p, err := Parse([]byte(`{"version": 1}`))
	if err != nil || len(p.Grants) != 0 {
		t.Errorf("no grants: %v %v", p, err)
	}
}

func TestParseRejects(t *testing.T) {
	grant := func(body string) string {
		return `{"version": 1, "grants": [{"match": {"commonName": "ok"}}, ` + body + `]}`
	}
	for raw, want := range map[string]string{
		`{"grants": []}`:                                         "version: missing",
		`{"version": 2, "grants": []}`:                           "version: 2 is not supported",
		`{"version": "1", "grants": []}`:                         "version: want a JSON integer, not string",
		`{"version": 1, "grant": []}`:                            `policy: unknown field "grant"`,
		`{"version": 1, "Grants": []}`:                           `policy: unknown field "Grants"`,
		`not json`:                                               "policy: invalid character",
		`{"version": 1} trailing`:                                "unexpected data after the JSON object",
		`null`:                                                   "want a JSON object, not null",
		grant(`null`):                                            "policy: grants[1]: want a JSON object, not null",
		grant(`{"name": "n"}`):                                   `policy: grants[1] ("n"): match: missing`,
		grant(`{"name": "n", "match": {}}`):                      `policy: grants[1] ("n"): match: no field set`,
		grant(`{"name": "n", "match": null}`):                    `policy: grants[1] ("n"): match: missing`,
		grant(`{"name": "n", "match": {"commonName": "*"}}`):     `policy: grants[1] ("n"): match: commonName: a lone "*"`,
		grant(`{"name": "n", "match": {"organization": "a*b"}}`): `grants[1] ("n"): match: organization: "a*b": "*" is allowed only`,
		grant(`{"name": "n", "match": {"commonName": "a", "cn": "b"}}`):                     `grants[1] ("n"): match: unknown field "cn"`,
		grant(`{"name": "n", "match": {"commonName": "a"}, "system": "root"}`):              `grants[1] ("n"): system: unknown role "root"`,
		grant(`{"name": "n", "match": {"commonName": "a"}, "system": "worker"}`):            `grants[1] ("n"): system: unknown role "worker"`,
		grant(`{"name": "n", "match": {"commonName": "a"}, "namespaces": {"x": "owner"}}`):  `grants[1] ("n"): namespaces["x"]: unknown role "owner"`,
		grant(`{"name": "n", "match": {"commonName": "a"}, "namespaces": {"x": "Writer"}}`): `namespaces["x"]: unknown role "Writer"`,
		grant(`{"name": "n", "match": {"commonName": "a"}, "namespaces": {"": "writer"}}`):  `grants[1] ("n"): namespaces: an empty namespace name`,
		grant(`{"name": "n", "match": {"commonName": "a"}, "roles": {}}`):                   `grants[1] ("n"): unknown field "roles"`,
		grant(`{"match": {"commonName": "a"}, "namespaces": ["x"]}`):                        `grants[1]: namespaces: want a JSON object, not array`,
	} {
		_, err := Parse([]byte(raw))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got  %v\n want an error with %q", raw, err, want)
		}
	}
}
