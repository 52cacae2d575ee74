package authz

import (
	"go.temporal.io/server/common/metrics"
)

// The policy's metrics, on the server's own metrics endpoint (the handler built from the config's global.metrics).
var (
	policyLoads = metrics.NewCounterDef(
		"temporal_mtls_authorization_policy_loads",
		metrics.WithDescription("Authorization policy file contents read, by result (ok: now in force; error: rejected)."),
	)
	policyStale = metrics.NewGaugeDef(
		"temporal_mtls_authorization_policy_stale",
		metrics.WithDescription("1 while the authorization policy file on disk is missing, unreadable or invalid "+
			"(the last good policy, or deny-all if there was none, stays in force)."),
	)
	policyGrants = metrics.NewGaugeDef(
		"temporal_mtls_authorization_policy_grants",
		metrics.WithDescription("Grants in the authorization policy in force."),
	)
)

const (
	resultOK    = "ok"
	resultError = "error"
)

func recordLoad(handler metrics.Handler, result string, stale bool, grants int) {
	policyLoads.With(handler).Record(1, metrics.StringTag("result", result))
	staleValue := 0.0
	if stale {
		staleValue = 1
	}
	policyStale.With(handler).Record(staleValue)
	policyGrants.With(handler).Record(float64(grants))
}
