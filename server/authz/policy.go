// Package authz maps a verified client certificate to Temporal claims through a policy file.
//
// The policy file is JSON, written by the operator:
//
//	{"version": 1, "grants": [{"name": "...", "match": {...}, "system": "none", "namespaces": {"default": "writer"}}]}
//
// A connection's claims are the union of every grant whose match fits its verified leaf certificate.
package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.temporal.io/server/common/authorization"
)

// Version is the only policy file version this server reads.
const Version = 1

// Policy is a validated policy file.
type Policy struct {
	Grants []Grant
}

// Grant gives roles to the certificates its match fits.
type Grant struct {
	Name       string
	Match      Match
	System     authorization.Role
	Namespaces map[string]authorization.Role
}

var systemRoles = map[string]authorization.Role{
	"none":   authorization.RoleUndefined,
	"reader": authorization.RoleReader,
	"writer": authorization.RoleWriter,
	"admin":  authorization.RoleAdmin,
}

var namespaceRoles = map[string]authorization.Role{
	"worker": authorization.RoleWorker,
	"reader": authorization.RoleReader,
	"writer": authorization.RoleWriter,
	"admin":  authorization.RoleAdmin,
}

type fileJSON struct {
	Version *int              `json:"version"`
	Grants  []json.RawMessage `json:"grants"`
}

type grantJSON struct {
	Name       string            `json:"name"`
	Match      json.RawMessage   `json:"match"`
	System     *string           `json:"system"`
	Namespaces map[string]string `json:"namespaces"`
}

// Parse validates a policy file. Any unknown field, role, version or invalid pattern rejects the whole file,
// with an error that names the grant (index and name) and the field.
func Parse(data []byte) (*Policy, error) {
	var file fileJSON
	if err := strictDecode(data, &file); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if file.Version == nil {
		return nil, errors.New("policy: version: missing (want 1)")
	}
	if *file.Version != Version {
		return nil, fmt.Errorf("policy: version: %d is not supported (want %d)", *file.Version, Version)
	}
	policy := &Policy{Grants: make([]Grant, 0, len(file.Grants))}
	for i, raw := range file.Grants {
		grant, err := parseGrant(raw)
		if err != nil {
			return nil, fmt.Errorf("policy: grants[%d]%s: %w", i, quotedName(raw), err)
		}
		policy.Grants = append(policy.Grants, grant)
	}
	return policy, nil
}

func parseGrant(raw json.RawMessage) (Grant, error) {
	var g grantJSON
	if err := strictDecode(raw, &g); err != nil {
		return Grant{}, err
	}
	grant := Grant{Name: g.Name, Namespaces: map[string]authorization.Role{}}
	if len(g.Match) == 0 || bytes.Equal(bytes.TrimSpace(g.Match), []byte("null")) {
		return Grant{}, errors.New("match: missing (a grant must name at least one certificate field)")
	}
	match, err := parseMatch(g.Match)
	if err != nil {
		return Grant{}, fmt.Errorf("match: %w", err)
	}
	grant.Match = match
	if g.System != nil {
		role, ok := systemRoles[*g.System]
		if !ok {
			return Grant{}, fmt.Errorf("system: unknown role %q (want one of none, reader, writer, admin)", *g.System)
		}
		grant.System = role
	}
	names := make([]string, 0, len(g.Namespaces))
	for name := range g.Namespaces {
		names = append(names, name)
	}
	sort.Strings(names) // the first bad entry is the same one on every load
	for _, name := range names {
		if name == "" {
			return Grant{}, errors.New("namespaces: an empty namespace name")
		}
		role, ok := namespaceRoles[g.Namespaces[name]]
		if !ok {
			return Grant{}, fmt.Errorf("namespaces[%q]: unknown role %q (want one of worker, reader, writer, admin)",
				name, g.Namespaces[name])
		}
		grant.Namespaces[name] = role
	}
	return grant, nil
}

// quotedName is ` ("NAME")` when the raw grant has a string name, for error messages.
func quotedName(raw json.RawMessage) string {
	var named struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &named) != nil || named.Name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", named.Name)
}

// strictDecode decodes one JSON object into a struct whose fields all have json tags. Keys must be spelled
// exactly as the tags (encoding/json alone would accept "CommonName" for "commonName" and ignore unknown keys),
// and nothing may follow the object.
func strictDecode(data []byte, into any) error {
	decoder := json.NewDecoder(bytes.NewReader(data))
	var object map[string]json.RawMessage
	if err := decoder.Decode(&object); err != nil {
		var typeError *json.UnmarshalTypeError
		if errors.As(err, &typeError) {
			return fmt.Errorf("want a JSON object, not %s", typeError.Value)
		}
		return err
	}
	if decoder.More() {
		return errors.New("unexpected data after the JSON object")
	}
	if object == nil {
		return errors.New("want a JSON object, not null")
	}
	known := map[string]bool{}
	kind := reflect.TypeOf(into).Elem()
	for i := 0; i < kind.NumField(); i++ {
		name, _, _ := strings.Cut(kind.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	keys := make([]string, 0, len(object))
	for key := range object {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if !known[key] {
			return fmt.Errorf("unknown field %q", key)
		}
	}
	if err := json.Unmarshal(data, into); err != nil {
		var typeError *json.UnmarshalTypeError
		if errors.As(err, &typeError) {
			return fmt.Errorf("%s: want a JSON %s, not %s", typeError.Field, jsonKind(typeError.Type), typeError.Value)
		}
		return err
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice:
		return "array"
	default:
		return t.String()
	}
}
