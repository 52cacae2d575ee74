package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/temporal"

	"github.com/temporal-mtls-operator/temporal-mtls-operator/server/authz"
)

const (
	flagAuthorizationPolicy         = "authorization-policy"
	flagAuthorizationPolicyInterval = "authorization-policy-interval"
	envAuthorizationPolicy          = "TEMPORAL_MTLS_AUTHORIZATION_POLICY"
	envAuthorizationPolicyInterval  = "TEMPORAL_MTLS_AUTHORIZATION_POLICY_INTERVAL"
)

type policyAuthorization struct {
	mapper  *authz.Mapper
	options []temporal.ServerOption
}

// newPolicyAuthorization is nil (the stock server's config-driven authorization) unless a policy file is named.
// Otherwise: Temporal's default authorizer and the policy's claim mapper, whose metrics go to the handler the
// server shares (serverMetrics), so both appear on the same endpoint.
func newPolicyAuthorization(c *cli.Context, cfg *config.Config, logger log.Logger, m *serverMetrics) (*policyAuthorization, error) {
	path := c.String(flagAuthorizationPolicy)
	if path == "" {
		return nil, nil
	}
	if cfg.Global.Authorization.Authorizer != "" || cfg.Global.Authorization.ClaimMapper != "" {
		return nil, errors.New("ERROR: --authorization-policy (" + envAuthorizationPolicy + ") replaces the " +
			"config's global.authorization.authorizer and claimMapper: leave both empty")
	}
	interval := c.Duration(flagAuthorizationPolicyInterval)
	if interval <= 0 {
		return nil, fmt.Errorf("ERROR: --%s (%s) must be a positive duration, not %v",
			flagAuthorizationPolicyInterval, envAuthorizationPolicyInterval, interval)
	}
	handler, err := m.get()
	if err != nil {
		return nil, err
	}
	audienceMapper, err := authorization.GetAudienceMapperFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("Unable to instantiate audience mapper: %v.", err)
	}
	logger.Info("Authorization by client certificate identity.", tag.NewStringTag("policy-file", path),
		tag.NewStringTag("interval", interval.String()))
	mapper := authz.NewMapper(path, interval, logger, handler)
	mapper.Start()
	return &policyAuthorization{
		mapper: mapper,
		options: []temporal.ServerOption{
			temporal.WithAuthorizer(authorization.NewDefaultAuthorizer()),
			temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return mapper }),
			temporal.WithAudienceGetter(func(*config.Config) authorization.JWTAudienceMapper { return audienceMapper }),
		},
	}, nil
}
