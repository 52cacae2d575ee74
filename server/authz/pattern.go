package authz

import (
	"errors"
	"fmt"
	"strings"
)

// Pattern is a Temporal Cloud style certificate filter value: case-insensitive and exact, except for one
// optional `*` at the very start (a suffix match) or the very end (a prefix match). `*` stands for any run of
// characters, including none.
type Pattern struct {
	text   string // lower-cased, without the `*`
	prefix bool   // "text*"
	suffix bool   // "*text"
}

// ParsePattern rejects an empty value, a lone `*` (it would match everything), more than one `*` and a `*`
// anywhere but at the start or the end.
func ParsePattern(value string) (*Pattern, error) {
	switch stars := strings.Count(value, "*"); {
	case value == "":
		return nil, errors.New("empty")
	case value == "*":
		return nil, errors.New(`a lone "*" is not allowed (it would match every certificate)`)
	case stars > 1:
		return nil, fmt.Errorf("%q: at most one \"*\" is allowed", value)
	case stars == 1 && value[0] != '*' && value[len(value)-1] != '*':
		return nil, fmt.Errorf("%q: \"*\" is allowed only at the very start or the very end", value)
	}
	p := &Pattern{
		prefix: strings.HasSuffix(value, "*"),
		suffix: strings.HasPrefix(value, "*"),
	}
	p.text = strings.ToLower(strings.Trim(value, "*"))
	return p, nil
}

// Matches compares one value.
func (p *Pattern) Matches(value string) bool {
	value = strings.ToLower(value)
	switch {
	case p.prefix:
		return strings.HasPrefix(value, p.text)
	case p.suffix:
		return strings.HasSuffix(value, p.text)
	default:
		return value == p.text
	}
}

// MatchesAny is true if at least one of the values matches.
func (p *Pattern) MatchesAny(values []string) bool {
	for _, value := range values {
		if p.Matches(value) {
			return true
		}
	}
	return false
}

func (p *Pattern) String() string {
	switch {
	case p.prefix:
		return p.text + "*"
	case p.suffix:
		return "*" + p.text
	default:
		return p.text
	}
}
