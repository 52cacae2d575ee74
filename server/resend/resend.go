// Package resend is Temporal's client factory (client.NewFactoryProvider, for temporal.WithClientFactoryProvider)
// whose matching clients send a workflow-path call again, at once and once, when it failed with Unavailable.
//
// Why: reloading TLS closes the server-side connections a removed CA authenticated (package tlsreload), and a
// call in flight on a closed connection fails with Unavailable. Temporal's matching clients wait a full second
// before they try again (common.CreateMatchingClientRetryPolicy and the long-poll policy, the history queues'
// reschedule), so every poll and every task add on a cut frontend or history connection to matching stalls
// workflows for that second. gRPC redials on the next call, so one immediate resend takes the new connection;
// a second Unavailable goes back to Temporal's own retries. History's clients retry after 50 ms already.
package resend

import (
	"time"

	"go.temporal.io/server/api/matchingservice/v1"
	"go.temporal.io/server/client"
	"go.temporal.io/server/common"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/testing/testhooks"
)

// FactoryProvider builds Temporal's own client factory and wraps the matching clients it makes.
type FactoryProvider struct {
	stock client.FactoryProvider
}

var _ client.FactoryProvider = FactoryProvider{}

func NewFactoryProvider() FactoryProvider {
	return FactoryProvider{stock: client.NewFactoryProvider()}
}

func (p FactoryProvider) NewFactory(
	rpcFactory common.RPCFactory,
	monitor membership.Monitor,
	metricsHandler metrics.Handler,
	dc *dynamicconfig.Collection,
	testHooks testhooks.TestHooks,
	numberOfHistoryShards int32,
	logger log.Logger,
	throttledLogger log.Logger,
) client.Factory {
	if metricsHandler == nil {
		metricsHandler = metrics.NoopMetricsHandler
	}
	stock := p.stock.NewFactory(rpcFactory, monitor, metricsHandler, dc, testHooks, numberOfHistoryShards, logger, throttledLogger)
	return &factory{Factory: stock, metrics: metricsHandler}
}

type factory struct {
	client.Factory
	metrics metrics.Handler
}

func (f *factory) NewMatchingClientWithTimeout(
	namespaceIDToName client.NamespaceIDToNameFunc,
	timeout, longPollTimeout time.Duration,
) (matchingservice.MatchingServiceClient, error) {
	stock, err := f.Factory.NewMatchingClientWithTimeout(namespaceIDToName, timeout, longPollTimeout)
	if err != nil {
		return nil, err
	}
	return NewMatchingClient(stock, f.metrics), nil
}
