package main

import (
	"testing"

	"github.com/urfave/cli/v2"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"

	"github.com/temporal-mtls-operator/temporal-mtls-operator/server/tlsreload"
)

// runReloadingTLS is newReloadingTLS with the start command's flags parsed from args (and the environment).
func runReloadingTLS(t *testing.T, args ...string) (*reloadingTLS, error) {
	t.Helper()
	var reloading *reloadingTLS
	var err error
	app := &cli.App{Flags: reloadingTLSFlags(), Action: func(c *cli.Context) error {
		cfg := &config.Config{}
		reloading, err = newReloadingTLS(c, cfg, log.NewNoopLogger(), newServerMetrics(cfg, log.NewNoopLogger()))
		return nil
	}}
	if runErr := app.Run(append([]string{"temporal-server"}, args...)); runErr != nil {
		t.Fatal(runErr)
	}
	t.Cleanup(reloading.stop)
	return reloading, err
}

func TestReloadingTLSIsOptIn(t *testing.T) {
	t.Setenv(envReloadingTLS, "")
	t.Setenv(envReloadingTLSInterval, "")
	reloading, err := runReloadingTLS(t)
	if err != nil || reloading != nil || reloading.serverOptions() != nil {
		t.Fatalf("off by default: got %v, %v", reloading, err)
	}
	t.Setenv(envReloadingTLS, "false")
	if reloading, err := runReloadingTLS(t); err != nil || reloading != nil {
		t.Fatalf("%s=false: got %v, %v", envReloadingTLS, reloading, err)
	}
}

func TestReloadingTLSFlagAndEnv(t *testing.T) {
	t.Setenv(envReloadingTLS, "")
	t.Setenv(envReloadingTLSInterval, "")
	reloading, err := runReloadingTLS(t, "--"+flagReloadingTLS)
	if err != nil || reloading == nil || len(reloading.serverOptions()) != 2 { // the TLS provider and the resending client factory
		t.Fatalf("--%s: got %v, %v", flagReloadingTLS, reloading, err)
	}
	if got := reloading.provider.Interval(); got != tlsreload.DefaultInterval {
		t.Fatalf("default interval %v", got)
	}
	t.Setenv(envReloadingTLS, "true")
	t.Setenv(envReloadingTLSInterval, "500ms")
	reloading, err = runReloadingTLS(t)
	if err != nil || reloading == nil || reloading.provider.Interval().String() != "500ms" {
		t.Fatalf("%s=true %s=500ms: got %v, %v", envReloadingTLS, envReloadingTLSInterval, reloading, err)
	}
	t.Setenv(envReloadingTLSInterval, "0s")
	if _, err := runReloadingTLS(t); err == nil {
		t.Fatal("a zero interval is an error")
	}
}
