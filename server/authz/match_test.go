package authz

import (
	"crypto/x509/pkix"
	"strings"
	"testing"
)

func mustMatch(t *testing.T, raw string) Match {
	t.Helper()
	m, err := parseMatch([]byte(raw))
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m
}

func TestMatchFields(t *testing.T) {
	orders := leaf(t, pkix.Name{CommonName: "api.orders.example.com", Organization: []string{"Other", "EXAMPLE"},
		OrganizationalUnit: []string{"Ops", "Payments"}},
		[]string{"worker-7.internal"}, []string{"spiffe://temporal-mtls.dev/ns/demo/cluster/demo/client/hello"},
		[]string{"ops@example.com"}, []string{"10.1.2.3"})
	plain := cn(t, "plain")
	for _, tc := range []struct {
		match string
		cert  bool // orders matches
	}{
		{`{"commonName": "*.orders.example.com"}`, true},
		{`{"commonName": "API.ORDERS.example.com"}`, true},
		{`{"commonName": "orders.example.com"}`, false},
		{`{"organization": "example"}`, true},                                // any of the O values
		{`{"organization": "Exam*"}`, true},                                  //
		{`{"organization": "Nope"}`, false},                                  //
		{`{"organizationalUnit": "payments"}`, true},                         // any of the OU values
		{`{"organizationalUnit": "Ops*"}`, true},                             //
		{`{"organizationalUnit": "Pay"}`, false},                             //
		{`{"subjectAlternativeName": "worker-*"}`, true},                     // DNS
		{`{"subjectAlternativeName": "spiffe://temporal-mtls.dev/*"}`, true}, // URI as text
		{`{"subjectAlternativeName": "*@EXAMPLE.com"}`, true},                // e-mail
		{`{"subjectAlternativeName": "10.1.2.3"}`, true},                     // IP as text
		{`{"subjectAlternativeName": "api.orders.example.com"}`, false},      // the CN is no SAN
		{`{"uri": "spiffe://temporal-mtls.dev/ns/demo/cluster/demo/client/hello"}`, true},
		{`{"uri": "SPIFFE://temporal-mtls.dev/ns/demo/cluster/demo/client/hello"}`, false}, // case-sensitive
		{`{"uri": "spiffe://temporal-mtls.dev/ns/demo/cluster/demo/client/HELLO"}`, false},
		{`{"uri": "spiffe://temporal-mtls.dev/ns/demo/cluster/demo/client/hell"}`, false}, // exact
		// AND of every set field
		{`{"commonName": "*.orders.example.com", "organization": "Example", "organizationalUnit": "Payments", "subjectAlternativeName": "worker-*"}`, true},
		{`{"commonName": "*.orders.example.com", "organization": "Example", "organizationalUnit": "Sales"}`, false},
		{`{"commonName": "*.orders.example.com", "uri": "spiffe://other"}`, false},
	} {
		m := mustMatch(t, tc.match)
		if got := m.Matches(orders); got != tc.cert {
			t.Errorf("%s: got %v, want %v", tc.match, got, tc.cert)
		}
		if m.Matches(plain) {
			t.Errorf("%s matches a certificate with only CN=plain", tc.match)
		}
		if m.Matches(nil) {
			t.Errorf("%s matches no certificate", tc.match)
		}
	}
}

func TestMatchSHA256(t *testing.T) {
	cert := cn(t, "pinned")
	other := cn(t, "pinned")
	hexDigits := Fingerprint(cert)
	var colons []string
	for i := 0; i < len(hexDigits); i += 2 {
		colons = append(colons, strings.ToUpper(hexDigits[i:i+2]))
	}
	for _, value := range []string{hexDigits, strings.ToUpper(hexDigits), strings.Join(colons, ":"),
		strings.ToLower(strings.Join(colons, ":"))} {
		m := mustMatch(t, `{"sha256": "`+value+`"}`)
		if !m.Matches(cert) {
			t.Errorf("sha256 %s does not match its certificate", value)
		}
		if m.Matches(other) {
			t.Errorf("sha256 %s matches another certificate with the same subject", value)
		}
	}
	for _, bad := range []string{"", "abc", hexDigits[:62], hexDigits + "00", "zz" + hexDigits[2:]} {
		if _, err := parseMatch([]byte(`{"sha256": "` + bad + `"}`)); err == nil || !strings.HasPrefix(err.Error(), "sha256: ") {
			t.Errorf("sha256 %q: got %v, want a sha256 error", bad, err)
		}
	}
}

func TestMatchRejects(t *testing.T) {
	for raw, want := range map[string]string{
		`{}`:                                "no field set",
		`{"commonName": "*"}`:               "commonName: a lone",
		`{"organization": "a*b"}`:           "organization: ",
		`{"organizationalUnit": ""}`:        "organizationalUnit: empty",
		`{"subjectAlternativeName": "*x*"}`: "subjectAlternativeName: ",
		`{"uri": ""}`:                       "uri: empty",
		`{"CommonName": "x"}`:               `unknown field "CommonName"`, // exact spelling, unlike plain encoding/json
		`{"URI": "x"}`:                      `unknown field "URI"`,
		`{"commonname2": "x"}`:              `unknown field "commonname2"`,
		`{"commonName": 3}`:                 "commonName: want a JSON string, not number",
		`["commonName"]`:                    "want a JSON object, not array",
		`{"uri": "a"} {}`:                   "unexpected data after the JSON object",
	} {
		_, err := parseMatch([]byte(raw))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", raw, err, want)
		}
	}
}
