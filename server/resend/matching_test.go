package resend

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/server/api/matchingservice/v1"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/metrics/metricstest"
	"go.temporal.io/server/common/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// conns is a listener that keeps the server side's raw connections, so a handler can close its own as
// reloading TLS does.
type conns struct {
	net.Listener
	mu   sync.Mutex
	byIP map[string]net.Conn
}

func (l *conns) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.byIP[conn.RemoteAddr().String()] = conn
		l.mu.Unlock()
	}
	return conn, err
}

func (l *conns) closeFor(ctx context.Context) {
	p, _ := peer.FromContext(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.byIP[p.Addr.String()].Close()
}

// matching answers AddWorkflowTask, PollWorkflowTaskQueue and DescribeTaskQueue with answer(call number, ctx).
type matching struct {
	matchingservice.UnimplementedMatchingServiceServer
	mu      sync.Mutex
	calls   int
	callers []string
	answer  func(call int, ctx context.Context) error
}

func (m *matching) next(ctx context.Context) error {
	p, _ := peer.FromContext(ctx)
	m.mu.Lock()
	m.calls++
	call := m.calls
	m.callers = append(m.callers, p.Addr.String())
	m.mu.Unlock()
	return m.answer(call, ctx)
}

func (m *matching) AddWorkflowTask(ctx context.Context, _ *matchingservice.AddWorkflowTaskRequest) (*matchingservice.AddWorkflowTaskResponse, error) {
	return &matchingservice.AddWorkflowTaskResponse{}, m.next(ctx)
}

func (m *matching) PollWorkflowTaskQueue(ctx context.Context, _ *matchingservice.PollWorkflowTaskQueueRequest) (*matchingservice.PollWorkflowTaskQueueResponseWithRawHistory, error) {
	return &matchingservice.PollWorkflowTaskQueueResponseWithRawHistory{}, m.next(ctx)
}

func (m *matching) DescribeTaskQueue(ctx context.Context, _ *matchingservice.DescribeTaskQueueRequest) (*matchingservice.DescribeTaskQueueResponse, error) {
	return &matchingservice.DescribeTaskQueueResponse{}, m.next(ctx)
}

func (m *matching) seen() (int, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls, append([]string(nil), m.callers...)
}

// serve starts a matching server and returns Temporal's own client connection to it (rpc.Dial: its
// interceptors turn gRPC errors into serviceerror types, as on every internode connection).
func serve(t *testing.T, answer func(call int, ctx context.Context) error) (*matching, *conns, matchingservice.MatchingServiceClient) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listener := &conns{Listener: inner, byIP: map[string]net.Conn{}}
	server := grpc.NewServer()
	m := &matching{answer: answer}
	matchingservice.RegisterMatchingServiceServer(server, m)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := rpc.Dial(inner.Addr().String(), nil, log.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return m, listener, matchingservice.NewMatchingServiceClient(conn)
}

// cutFirst closes the connection under the first call while it is in flight; later calls succeed.
func cutFirst(listener **conns) func(int, context.Context) error {
	return func(call int, ctx context.Context) error {
		if call == 1 {
			(*listener).closeFor(ctx)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCutCallFailsWithUnavailableWithoutResend(t *testing.T) {
	var listener *conns
	m, l, stock := serve(t, cutFirst(&listener))
	listener = l
	_, err := stock.AddWorkflowTask(callCtx(t), &matchingservice.AddWorkflowTaskRequest{})
	var unavailable *serviceerror.Unavailable
	if !errors.As(err, &unavailable) {
		t.Fatalf("a call whose connection closes: %T %v, want *serviceerror.Unavailable", err, err)
	}
	if calls, _ := m.seen(); calls != 1 {
		t.Fatalf("matching saw %d calls, want 1", calls)
	}
}

func TestCutCallIsSentAgainOnANewConnection(t *testing.T) {
	for name, call := range map[string]func(matchingservice.MatchingServiceClient, context.Context) error{
		"AddWorkflowTask": func(c matchingservice.MatchingServiceClient, ctx context.Context) error {
			_, err := c.AddWorkflowTask(ctx, &matchingservice.AddWorkflowTaskRequest{})
			return err
		},
		"PollWorkflowTaskQueue": func(c matchingservice.MatchingServiceClient, ctx context.Context) error {
			_, err := c.PollWorkflowTaskQueue(ctx, &matchingservice.PollWorkflowTaskQueueRequest{})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			var listener *conns
			m, l, stock := serve(t, cutFirst(&listener))
			listener = l
			capture := metricstest.NewCaptureHandler()
			recorded := capture.StartCapture()
			defer capture.StopCapture(recorded)
			if err := call(NewMatchingClient(stock, capture), callCtx(t)); err != nil {
				t.Fatalf("the resent call: %v", err)
			}
			calls, callers := m.seen()
			if calls != 2 || callers[0] == callers[1] {
				t.Fatalf("matching saw calls from %v, want 2 on two connections", callers)
			}
			resent := recorded.Snapshot()["temporal_mtls_matching_calls_resent"]
			if len(resent) != 1 || resent[0].Value != int64(1) || resent[0].Tags["method"] != name {
				t.Fatalf("resent counter: %+v, want one record of 1 with method=%s", resent, name)
			}
		})
	}
}

func TestSecondUnavailableIsReturned(t *testing.T) {
	m, _, stock := serve(t, func(int, context.Context) error { return status.Error(codes.Unavailable, "matching is busy") })
	_, err := NewMatchingClient(stock, nil).AddWorkflowTask(callCtx(t), &matchingservice.AddWorkflowTaskRequest{})
	var unavailable *serviceerror.Unavailable
	if !errors.As(err, &unavailable) || unavailable.Message != "matching is busy" {
		t.Fatalf("err = %T %v, want the server's Unavailable", err, err)
	}
	if calls, _ := m.seen(); calls != 2 {
		t.Fatalf("matching saw %d calls, want 2 (one resend, then Temporal's own retry policy)", calls)
	}
}

func TestOtherErrorsAndOtherMethodsAreNotResent(t *testing.T) {
	m, _, stock := serve(t, func(int, context.Context) error { return status.Error(codes.NotFound, "no such task queue") })
	client := NewMatchingClient(stock, nil)
	_, err := client.AddWorkflowTask(callCtx(t), &matchingservice.AddWorkflowTaskRequest{})
	var notFound *serviceerror.NotFound
	if !errors.As(err, &notFound) {
		t.Fatalf("err = %T %v, want NotFound", err, err)
	}
	if calls, _ := m.seen(); calls != 1 {
		t.Fatalf("NotFound: matching saw %d calls, want 1", calls)
	}

	m, _, stock = serve(t, func(int, context.Context) error { return status.Error(codes.Unavailable, "down") })
	_, err = NewMatchingClient(stock, nil).DescribeTaskQueue(callCtx(t), &matchingservice.DescribeTaskQueueRequest{})
	if calls, _ := m.seen(); err == nil || calls != 1 {
		t.Fatalf("DescribeTaskQueue: err %v, %d calls; want the error after 1 call (administrative calls pass through)", err, calls)
	}
}

func TestEndedContextIsNotResent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m, _, stock := serve(t, func(int, context.Context) error {
		cancel() // the caller gives up while the call fails
		return status.Error(codes.Unavailable, "down")
	})
	_, err := NewMatchingClient(stock, nil).AddWorkflowTask(ctx, &matchingservice.AddWorkflowTaskRequest{})
	if calls, _ := m.seen(); err == nil || calls != 1 {
		t.Fatalf("err %v, %d calls; want an error after 1 call", err, calls)
	}
}
