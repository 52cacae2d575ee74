package authz

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Match is a grant's certificate filter: every set field must match the verified leaf certificate.
type Match struct {
	CommonName             *Pattern
	Organization           *Pattern
	OrganizationalUnit     *Pattern
	SubjectAlternativeName *Pattern
	URI                    string // exact, case-sensitive: one of the leaf's URI SANs
	SHA256                 string // lower-case hex of the leaf's SHA-256 fingerprint, no colons
}

type matchJSON struct {
	CommonName             *string `json:"commonName"`
	Organization           *string `json:"organization"`
	OrganizationalUnit     *string `json:"organizationalUnit"`
	SubjectAlternativeName *string `json:"subjectAlternativeName"`
	URI                    *string `json:"uri"`
	SHA256                 *string `json:"sha256"`
}

func parseMatch(raw []byte) (Match, error) {
	var m matchJSON
	if err := strictDecode(raw, &m); err != nil {
		return Match{}, err
	}
	var match Match
	set := 0
	for _, field := range []struct {
		name  string
		value *string
		into  **Pattern
	}{
		{"commonName", m.CommonName, &match.CommonName},
		{"organization", m.Organization, &match.Organization},
		{"organizationalUnit", m.OrganizationalUnit, &match.OrganizationalUnit},
		{"subjectAlternativeName", m.SubjectAlternativeName, &match.SubjectAlternativeName},
	} {
		if field.value == nil {
			continue
		}
		pattern, err := ParsePattern(*field.value)
		if err != nil {
			return Match{}, fmt.Errorf("%s: %w", field.name, err)
		}
		*field.into = pattern
		set++
	}
	if m.URI != nil {
		if *m.URI == "" {
			return Match{}, errors.New("uri: empty")
		}
		match.URI = *m.URI
		set++
	}
	if m.SHA256 != nil {
		fingerprint, err := parseFingerprint(*m.SHA256)
		if err != nil {
			return Match{}, fmt.Errorf("sha256: %w", err)
		}
		match.SHA256 = fingerprint
		set++
	}
	if set == 0 {
		return Match{}, errors.New("no field set (a grant must name at least one certificate field)")
	}
	return match, nil
}

// parseFingerprint accepts hex in either case, with or without colons between the bytes.
func parseFingerprint(value string) (string, error) {
	digits := strings.ToLower(strings.ReplaceAll(value, ":", ""))
	decoded, err := hex.DecodeString(digits)
	if err != nil || len(decoded) != sha256.Size {
		return "", fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits, colons optional)", value)
	}
	return digits, nil
}

// Matches reports whether every set field fits the certificate.
func (m Match) Matches(cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	return m.matches(&candidate{cert: cert})
}

// candidate is a certificate being matched against every grant: its fingerprint and SAN list are computed once.
type candidate struct {
	cert        *x509.Certificate
	fingerprint string
	sans        []string
}

func (c *candidate) sha256() string {
	if c.fingerprint == "" {
		c.fingerprint = Fingerprint(c.cert)
	}
	return c.fingerprint
}

func (c *candidate) subjectAlternativeNames() []string {
	if c.sans == nil {
		c.sans = SubjectAlternativeNames(c.cert)
	}
	return c.sans
}

func (m Match) matches(c *candidate) bool {
	cert := c.cert
	if m.SHA256 != "" && m.SHA256 != c.sha256() {
		return false
	}
	if m.URI != "" && !anyURI(cert, func(uri string) bool { return uri == m.URI }) {
		return false
	}
	if m.CommonName != nil && !m.CommonName.Matches(cert.Subject.CommonName) {
		return false
	}
	if m.Organization != nil && !m.Organization.MatchesAny(cert.Subject.Organization) {
		return false
	}
	if m.OrganizationalUnit != nil && !m.OrganizationalUnit.MatchesAny(cert.Subject.OrganizationalUnit) {
		return false
	}
	if m.SubjectAlternativeName != nil && !m.SubjectAlternativeName.MatchesAny(c.subjectAlternativeNames()) {
		return false
	}
	return true
}

// Fingerprint is the certificate's SHA-256 fingerprint, lower-case hex without colons.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// SubjectAlternativeNames lists the certificate's SANs as text: DNS names, URIs, e-mail addresses, IP addresses.
func SubjectAlternativeNames(cert *x509.Certificate) []string {
	names := make([]string, 0, len(cert.DNSNames)+len(cert.URIs)+len(cert.EmailAddresses)+len(cert.IPAddresses))
	names = append(names, cert.DNSNames...)
	for _, uri := range cert.URIs {
		names = append(names, uri.String())
	}
	names = append(names, cert.EmailAddresses...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

func anyURI(cert *x509.Certificate, fits func(string) bool) bool {
	for _, uri := range cert.URIs {
		if fits(uri.String()) {
			return true
		}
	}
	return false
}
