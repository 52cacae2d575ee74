package resend

import (
	"context"
	"errors"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/server/api/matchingservice/v1"
	"go.temporal.io/server/common/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// matchingClient resends the calls workflows wait on: polls, task adds, queries and Nexus dispatch. The rest
// (administrative calls) pass through unchanged.
type matchingClient struct {
	matchingservice.MatchingServiceClient
	metrics metrics.Handler
}

// NewMatchingClient wraps a matching client; handler may be nil.
func NewMatchingClient(stock matchingservice.MatchingServiceClient, handler metrics.Handler) matchingservice.MatchingServiceClient {
	if handler == nil {
		handler = metrics.NoopMetricsHandler
	}
	return &matchingClient{MatchingServiceClient: stock, metrics: handler}
}

// again makes call, and once more at once when it failed with Unavailable while ctx is still live.
func again[Req, Resp any](c *matchingClient, ctx context.Context, method string,
	call func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, opts []grpc.CallOption) (Resp, error) {
	resp, err := call(ctx, req, opts...)
	if err == nil || !unavailable(err) || ctx.Err() != nil {
		return resp, err
	}
	callsResent.With(c.metrics).Record(1, metrics.StringTag("method", method))
	return call(ctx, req, opts...)
}

// unavailable is gRPC's Unavailable, as Temporal's client interceptor converts it or as gRPC returns it.
func unavailable(err error) bool {
	var converted *serviceerror.Unavailable
	return errors.As(err, &converted) || status.Code(err) == codes.Unavailable
}

func (c *matchingClient) PollWorkflowTaskQueue(ctx context.Context, in *matchingservice.PollWorkflowTaskQueueRequest, opts ...grpc.CallOption) (*matchingservice.PollWorkflowTaskQueueResponse, error) {
	return again(c, ctx, "PollWorkflowTaskQueue", c.MatchingServiceClient.PollWorkflowTaskQueue, in, opts)
}

func (c *matchingClient) PollActivityTaskQueue(ctx context.Context, in *matchingservice.PollActivityTaskQueueRequest, opts ...grpc.CallOption) (*matchingservice.PollActivityTaskQueueResponse, error) {
	return again(c, ctx, "PollActivityTaskQueue", c.MatchingServiceClient.PollActivityTaskQueue, in, opts)
}

func (c *matchingClient) PollNexusTaskQueue(ctx context.Context, in *matchingservice.PollNexusTaskQueueRequest, opts ...grpc.CallOption) (*matchingservice.PollNexusTaskQueueResponse, error) {
	return again(c, ctx, "PollNexusTaskQueue", c.MatchingServiceClient.PollNexusTaskQueue, in, opts)
}

func (c *matchingClient) AddWorkflowTask(ctx context.Context, in *matchingservice.AddWorkflowTaskRequest, opts ...grpc.CallOption) (*matchingservice.AddWorkflowTaskResponse, error) {
	return again(c, ctx, "AddWorkflowTask", c.MatchingServiceClient.AddWorkflowTask, in, opts)
}

func (c *matchingClient) AddActivityTask(ctx context.Context, in *matchingservice.AddActivityTaskRequest, opts ...grpc.CallOption) (*matchingservice.AddActivityTaskResponse, error) {
	return again(c, ctx, "AddActivityTask", c.MatchingServiceClient.AddActivityTask, in, opts)
}

func (c *matchingClient) QueryWorkflow(ctx context.Context, in *matchingservice.QueryWorkflowRequest, opts ...grpc.CallOption) (*matchingservice.QueryWorkflowResponse, error) {
	return again(c, ctx, "QueryWorkflow", c.MatchingServiceClient.QueryWorkflow, in, opts)
}

func (c *matchingClient) RespondQueryTaskCompleted(ctx context.Context, in *matchingservice.RespondQueryTaskCompletedRequest, opts ...grpc.CallOption) (*matchingservice.RespondQueryTaskCompletedResponse, error) {
	return again(c, ctx, "RespondQueryTaskCompleted", c.MatchingServiceClient.RespondQueryTaskCompleted, in, opts)
}

func (c *matchingClient) DispatchNexusTask(ctx context.Context, in *matchingservice.DispatchNexusTaskRequest, opts ...grpc.CallOption) (*matchingservice.DispatchNexusTaskResponse, error) {
	return again(c, ctx, "DispatchNexusTask", c.MatchingServiceClient.DispatchNexusTask, in, opts)
}

func (c *matchingClient) RespondNexusTaskCompleted(ctx context.Context, in *matchingservice.RespondNexusTaskCompletedRequest, opts ...grpc.CallOption) (*matchingservice.RespondNexusTaskCompletedResponse, error) {
	return again(c, ctx, "RespondNexusTaskCompleted", c.MatchingServiceClient.RespondNexusTaskCompleted, in, opts)
}

func (c *matchingClient) RespondNexusTaskFailed(ctx context.Context, in *matchingservice.RespondNexusTaskFailedRequest, opts ...grpc.CallOption) (*matchingservice.RespondNexusTaskFailedResponse, error) {
	return again(c, ctx, "RespondNexusTaskFailed", c.MatchingServiceClient.RespondNexusTaskFailed, in, opts)
}
