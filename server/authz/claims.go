package authz

import (
	"crypto/x509"

	"go.temporal.io/server/common/authorization"
)

// Claims is the union (bitwise OR) of the roles of every grant that matches the verified leaf certificate,
// and the names of those grants. No certificate or no matching grant: empty claims, which the default
// authorizer denies for everything but health checks.
func (p *Policy) Claims(cert *x509.Certificate) (*authorization.Claims, []string) {
	if p == nil || cert == nil {
		return &authorization.Claims{}, nil
	}
	var claims *authorization.Claims
	var matched []string
	c := &candidate{cert: cert}
	for i := range p.Grants {
		grant := &p.Grants[i]
		if !grant.Match.matches(c) {
			continue
		}
		if claims == nil {
			claims = &authorization.Claims{Subject: Subject(cert), Namespaces: map[string]authorization.Role{}}
		}
		matched = append(matched, grant.Name)
		claims.System |= grant.System
		for namespace, role := range grant.Namespaces {
			claims.Namespaces[namespace] |= role
		}
	}
	if claims == nil {
		return &authorization.Claims{}, nil
	}
	return claims, matched
}

// Subject names a certificate in claims and logs: its subject common name, else its first URI SAN.
func Subject(cert *x509.Certificate) string {
	if cert.Subject.CommonName != "" {
		return cert.Subject.CommonName
	}
	if len(cert.URIs) > 0 {
		return cert.URIs[0].String()
	}
	return ""
}
