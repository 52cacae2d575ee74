package authz

import (
	"strings"
	"testing"
)

func TestPatternMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, value string
		want           bool
	}{
		{"hello.example.com", "hello.example.com", true},
		{"hello.example.com", "HELLO.Example.COM", true},
		{"Hello.Example.com", "hello.example.com", true},
		{"hello.example.com", "hello.example.com.evil", false},
		{"hello.example.com", "x.hello.example.com", false},
		{"*.orders.example.com", "api.orders.example.com", true},
		{"*.orders.example.com", "A.B.ORDERS.example.com", true},
		{"*.orders.example.com", "orders.example.com", false},
		{"*.orders.example.com", "api.orders.example.com.evil", false},
		{"worker-*", "worker-1", true},
		{"worker-*", "WORKER-abc", true},
		{"worker-*", "my-worker-1", false},
		{"worker-*", "worker", false},
	} {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := p.Matches(tc.value); got != tc.want {
			t.Errorf("%q matches %q: got %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

func TestPatternRejects(t *testing.T) {
	for pattern, reason := range map[string]string{
		"":          "empty",
		"*":         "lone",
		"**":        "at most one",
		"*a*":       "at most one",
		"a*b":       "only at the very start or the very end",
		"*.a.*.com": "at most one",
		"a.*.com":   "only at the very start or the very end",
	} {
		_, err := ParsePattern(pattern)
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("%q: got error %v, want one about %q", pattern, err, reason)
		}
	}
}

func TestPatternMatchesAny(t *testing.T) {
	p, _ := ParsePattern("payments")
	if !p.MatchesAny([]string{"Ops", "PAYMENTS"}) || p.MatchesAny([]string{"Ops"}) || p.MatchesAny(nil) {
		t.Error("MatchesAny must be true exactly when one value matches")
	}
}
