package main

import (
	"fmt"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/temporal"
)

// serverMetrics is the one metrics handler (built from the config's global.metrics, as the server would build
// it) that our features and the server share, so all their metrics appear on the same endpoint. It is built
// only when a feature asks for it; otherwise the server builds its own, as the stock one does.
type serverMetrics struct {
	cfg     *config.Config
	logger  log.Logger
	handler metrics.Handler
}

func newServerMetrics(cfg *config.Config, logger log.Logger) *serverMetrics {
	return &serverMetrics{cfg: cfg, logger: logger}
}

func (m *serverMetrics) get() (metrics.Handler, error) {
	if m.handler == nil {
		handler, err := metrics.MetricsHandlerFromConfig(m.logger, m.cfg.Global.Metrics)
		if err != nil {
			return nil, fmt.Errorf("Unable to create metrics handler: %v.", err)
		}
		m.handler = handler
	}
	return m.handler, nil
}

// options hands the handler to the server, if one was built.
func (m *serverMetrics) options() []temporal.ServerOption {
	if m.handler == nil {
		return nil
	}
	return []temporal.ServerOption{temporal.WithCustomMetricsHandler(m.handler)}
}
