package resend

import "go.temporal.io/server/common/metrics"

var callsResent = metrics.NewCounterDef(
	"temporal_mtls_matching_calls_resent",
	metrics.WithDescription("Calls to matching sent again at once after they failed with Unavailable (a closed "+
		"connection: reloading TLS ends those a removed CA authenticated), by method."),
)
