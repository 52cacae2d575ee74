package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/temporal"

	"github.com/temporal-mtls-operator/temporal-mtls-operator/server/resend"
	"github.com/temporal-mtls-operator/temporal-mtls-operator/server/tlsreload"
)

const (
	flagReloadingTLS         = "reloading-tls"
	flagReloadingTLSInterval = "reloading-tls-interval"
	envReloadingTLS          = "TEMPORAL_MTLS_RELOADING_TLS"
	envReloadingTLSInterval  = "TEMPORAL_MTLS_RELOADING_TLS_INTERVAL"
)

func reloadingTLSFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{
			Name: flagReloadingTLS,
			Usage: "CA bundles (global.tls rootCaFiles, clientCaFiles) reload for new handshakes without a restart, and " +
				"server-side connections whose client certificate no longer verifies are closed (package tlsreload)",
			EnvVars: []string{envReloadingTLS},
		},
		&cli.DurationFlag{
			Name:    flagReloadingTLSInterval,
			Value:   tlsreload.DefaultInterval,
			Usage:   "with --" + flagReloadingTLS + ": how often the CA files are read again and connections checked",
			EnvVars: []string{envReloadingTLSInterval},
		},
	}
}

type reloadingTLS struct {
	provider *tlsreload.Provider
	options  []temporal.ServerOption
}

// newReloadingTLS is nil (Temporal's own TLS provider, built by the server from global.tls) unless
// --reloading-tls. Otherwise the reloading provider, built from the same global.tls and polling from now on.
func newReloadingTLS(c *cli.Context, cfg *config.Config, logger log.Logger, m *serverMetrics) (*reloadingTLS, error) {
	if !c.Bool(flagReloadingTLS) {
		return nil, nil
	}
	interval := c.Duration(flagReloadingTLSInterval)
	if interval <= 0 {
		return nil, fmt.Errorf("ERROR: --%s (%s) must be a positive duration, not %v",
			flagReloadingTLSInterval, envReloadingTLSInterval, interval)
	}
	handler, err := m.get()
	if err != nil {
		return nil, err
	}
	provider, err := tlsreload.NewProvider(cfg.Global.TLS, interval, logger, handler)
	if err != nil {
		return nil, fmt.Errorf("Unable to create the reloading TLS provider: %v.", err)
	}
	logger.Info("Reloading TLS: CA bundles are read again and server-side connections checked every interval.",
		tag.NewStringTag("interval", interval.String()))
	provider.Start()
	return &reloadingTLS{provider: provider, options: []temporal.ServerOption{
		temporal.WithTLSConfigFactory(provider),
		// The connections the provider closes fail the calls in flight on them; matching's are resent at once.
		temporal.WithClientFactoryProvider(resend.NewFactoryProvider()),
	}}, nil
}

func (r *reloadingTLS) stop() {
	if r != nil {
		r.provider.Stop()
	}
}

func (r *reloadingTLS) serverOptions() []temporal.ServerOption {
	if r == nil {
		return nil
	}
	return r.options
}
