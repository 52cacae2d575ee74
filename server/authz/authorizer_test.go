package authz

import (
	"context"
	"testing"

	"go.temporal.io/server/common/api"
	"go.temporal.io/server/common/authorization"
)

// authorize is Temporal's default authorizer's decision, as the frontend's interceptor asks it.
func authorize(t *testing.T, claims *authorization.Claims, method, namespace string) authorization.Decision {
	t.Helper()
	result, err := authorization.NewDefaultAuthorizer().Authorize(context.Background(), claims,
		&authorization.CallTarget{APIName: api.WorkflowServicePrefix + method, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	return result.Decision
}

func TestDefaultAuthorizerDecisions(t *testing.T) {
	p := mustParse(t, `{"version": 1, "grants": [
	  {"match": {"commonName": "writer"}, "namespaces": {"default": "writer"}},
	  {"match": {"commonName": "reader"}, "namespaces": {"default": "reader"}},
	  {"match": {"commonName": "worker"}, "namespaces": {"default": "worker"}},
	  {"match": {"commonName": "ops"}, "system": "admin"}]}`)
	claimsOf := func(name string) *authorization.Claims { c, _ := p.Claims(cn(t, name)); return c }
	allow, deny := authorization.DecisionAllow, authorization.DecisionDeny
	for _, tc := range []struct {
		who, method, namespace string
		want                   authorization.Decision
	}{
		{"writer", "StartWorkflowExecution", "default", allow},
		{"writer", "ListWorkflowExecutions", "default", allow},
		{"writer", "StartWorkflowExecution", "orders", deny},
		{"writer", "ListNamespaces", "", deny}, // cluster scope: a namespace role is not enough
		{"writer", "DeleteNamespace", "default", deny},
		{"reader", "StartWorkflowExecution", "default", deny},
		{"reader", "ListWorkflowExecutions", "default", allow},
		{"worker", "ListWorkflowExecutions", "default", deny},
		{"ops", "StartWorkflowExecution", "orders", allow},
		{"ops", "ListNamespaces", "", allow},
		{"stranger", "ListWorkflowExecutions", "default", deny},
		{"stranger", "GetSystemInfo", "", allow}, // health checks always pass
	} {
		if got := authorize(t, claimsOf(tc.who), tc.method, tc.namespace); got != tc.want {
			t.Errorf("%s %s in %q: got %v, want %v", tc.who, tc.method, tc.namespace, got, tc.want)
		}
	}
	health, _ := authorization.NewDefaultAuthorizer().Authorize(context.Background(), &authorization.Claims{},
		&authorization.CallTarget{APIName: "/grpc.health.v1.Health/Check"})
	if health.Decision != allow {
		t.Error("grpc health check denied")
	}
}
