package tlsreload

import (
	"strings"

	"go.temporal.io/server/common/metrics"
)

// Reloading TLS's metrics, on the server's own metrics endpoint.
var (
	bundleLoads = metrics.NewCounterDef(
		"temporal_mtls_tls_ca_bundle_loads",
		metrics.WithDescription("CA bundle contents read by reloading TLS, by bundle (its files) and result "+
			"(ok: in force; error: rejected, the last good pool stays in force)."),
	)
	bundleStale = metrics.NewGaugeDef(
		"temporal_mtls_tls_ca_bundle_stale",
		metrics.WithDescription("1 while a CA bundle's files are unreadable or malformed (its last good pool stays in force)."),
	)
	connectionsClosed = metrics.NewCounterDef(
		"temporal_mtls_tls_connections_closed",
		metrics.WithDescription("Server-side TLS connections closed because their client certificate chain no longer "+
			"verifies against the current client CA bundle (CA removed, or the chain expired)."),
	)
	connectionsTracked = metrics.NewGaugeDef(
		"temporal_mtls_tls_connections_tracked",
		metrics.WithDescription("Open server-side TLS connections with a verified client certificate that reloading "+
			"TLS checks against the current client CA bundle."),
	)
)

const (
	resultOK    = "ok"
	resultError = "error"
)

func bundleTag(files []string) metrics.Tag {
	return metrics.StringTag("bundle", strings.Join(files, ","))
}

func recordBundleLoad(handler metrics.Handler, files []string, result string, stale bool) {
	bundleLoads.With(handler).Record(1, bundleTag(files), metrics.StringTag("result", result))
	value := 0.0
	if stale {
		value = 1
	}
	bundleStale.With(handler).Record(value, bundleTag(files))
}
