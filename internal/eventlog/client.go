package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/internal/tracing"
)

// Conn is a service's connection to the event store: the official client,
// kept usable across outages, with every call bounded by its context.
//
// Holding an *esdb.Client directly is not enough, for two reasons (v4.2.0):
//   - after a call fails because the server is unreachable, the client
//     rediscovers the node on its next call, and when that fails (about a
//     second of retries against a refused port) it closes itself for good:
//     every later call answers ErrorCodeConnectionClosed, so a service would
//     never recover from a store restart;
//   - while it (re)discovers, it ignores the caller's context, for up to
//     MaxDiscoverAttempts × GossipTimeout (50 s by default against a store
//     that accepts connections but does not answer).
//
// Conn replaces a client that closed itself or lost its connection, and Call
// returns by the context's deadline whatever the client is doing.
type Conn struct {
	cfg *esdb.Configuration

	mu     sync.Mutex
	cur    *handle
	closed bool
}

// handle is one official client and the number of calls running on it. A
// client is closed only once it is retired and idle: closing it under a call
// that is starting makes it send on a closed channel, and panic.
type handle struct {
	client  *esdb.Client
	calls   int
	retired bool
}

// Connect returns a connection to the store at connString (an esdb:// URL).
// It does not dial: the first call does. The client's own log lines go to log
// at debug level (nil discards them): it logs every failure it also returns,
// which callers report with more context.
func Connect(connString string, log *slog.Logger) (*Conn, error) {
	cfg, err := esdb.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("event store connection string: %w", err)
	}
	cfg.Logger = clientLogger(log)
	c := &Conn{cfg: cfg}
	if c.cur, err = c.newHandle(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Conn) newHandle() (*handle, error) {
	cfg := *c.cfg // NewClient keeps the pointer; give each client its own copy
	client, err := esdb.NewClient(&cfg)
	if err != nil {
		return nil, fmt.Errorf("event store client: %w", err)
	}
	return &handle{client: client}, nil
}

func clientLogger(log *slog.Logger) esdb.LoggingFunc {
	if log == nil {
		return esdb.NoopLogging()
	}
	return func(level esdb.LogLevel, format string, args ...any) {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug(fmt.Sprintf(format, args...), "component", "esdb", "esdb_level", level)
		}
	}
}

// ErrClosed is returned by calls on a closed Conn.
var ErrClosed = errors.New("event store connection closed")

// Close closes the connection: new calls fail with ErrClosed, and the client
// closes once the calls in flight have returned.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.retire(c.cur)
	}
	return nil
}

func (c *Conn) acquire() (*handle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	c.cur.calls++
	return c.cur, nil
}

func (c *Conn) release(h *handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.calls--
	c.closeIfDone(h)
}

// retire and closeIfDone run with c.mu held.
func (c *Conn) retire(h *handle) {
	h.retired = true
	c.closeIfDone(h)
}

func (c *Conn) closeIfDone(h *handle) {
	if h.retired && h.calls == 0 {
		// Its subscriptions end with it; their owners resubscribe.
		_ = h.client.Close()
	}
}

// renew replaces h's client when err says it can no longer reach the store:
// either it closed itself, or its connection failed. The official client
// redials only on some paths, and grpc's own reconnection backoff grows to
// two minutes, far longer than a store restart; a new client dials at once.
// A concurrent caller may have renewed it already. renew reports whether
// the failed call may be tried again on the new client: only when the old
// one had closed itself, because then the call never left the process.
func (c *Conn) renew(h *handle, err error) bool {
	var esErr *esdb.Error
	closed := errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeConnectionClosed
	unreachable := status.Code(err) == codes.Unavailable || errors.As(err, &esErr) && esErr.Code() == esdb.ErrorUnavailable
	if !closed && !unreachable {
		return false
	}
	return c.replace(h) && closed
}

// replace puts a new client in h's place, unless a concurrent caller did
// already; false when the connection is closed or no client could be made.
func (c *Conn) replace(h *handle) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.cur == h {
		fresh, err := c.newHandle()
		if err != nil {
			return false
		}
		c.cur = fresh
		c.retire(h)
	}
	return true
}

// Op says what a store call does, for its span: Method is the official
// client's method it calls (the first, when it takes a few), Stream the
// stream it is about (AllStream for $all).
type Op struct {
	Method string
	Stream string
}

// start begins op's client span and puts its trace context in ctx's
// outgoing gRPC metadata. The official client takes no stats handler, so
// this span stands for its call; it does send the metadata of the context
// it is given, so the store's server span (the embedded store's, when
// Traced) joins the trace as this span's child.
func (op Op) start(ctx context.Context) (context.Context, trace.Span) {
	ctx, span := tracing.Tracer().Start(ctx, "esdb."+op.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("orderly.stream", op.Stream)))
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	for k, v := range carrier {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	return ctx, span
}

// Call runs fn with the current client and returns its result, or ctx's
// error as soon as ctx is done even if fn is still blocked inside the client
// (fn then finishes on its own; ctx, which fn must use, cancels its RPC). A
// client that cannot reach the store is replaced (see renew), and fn tried
// once more on the new one if it never left. The call is traced as op.
//
// fn must communicate only through its results: after an early return
// nothing reads what it does.
func Call[T any](ctx context.Context, c *Conn, op Op, fn func(context.Context, *esdb.Client) (T, error)) (_ T, err error) {
	ctx, span := op.start(ctx)
	defer func() { tracing.Fail(span, err); span.End() }()
	for retried := false; ; retried = true {
		h, err := c.acquire()
		if err != nil {
			var zero T
			return zero, err
		}
		v, err, answered := bounded(ctx, c, h, fn)
		if answered && !retried && c.renew(h, err) {
			continue
		}
		return v, c.hinted(err)
	}
}

// hinted adds to err the likely fix when it is what a TLS mismatch looks like
// from the client: the official client reports one only as a failed handshake
// or a closed connection, deep in its discovery error, and retries it as an
// outage for ever.
func (c *Conn) hinted(err error) error {
	switch {
	case err == nil:
		return nil
	case !c.cfg.DisableTLS && strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
		return fmt.Errorf("%w (the event store does not use TLS: add tls=false to the connection string)", err)
	case c.cfg.DisableTLS && strings.Contains(err.Error(), "error reading server preface"):
		return fmt.Errorf("%w (if the event store uses TLS, remove tls=false from the connection string)", err)
	}
	return err
}

// CallWithin is Call under a service's own store deadline, whatever the
// caller's: a call cut short by it has ErrTimeout as its context's cause,
// which the services answer as Unavailable rather than as the caller's
// DeadlineExceeded.
func CallWithin[T any](ctx context.Context, c *Conn, timeout time.Duration, op Op, fn func(context.Context, *esdb.Client) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	return Call(ctx, c, op, fn)
}

// wedgeGrace is how long a call may go on after its context ended before
// its client counts as wedged. A healthy client returns at once then: the
// context cancels its RPC.
var wedgeGrace = 2 * time.Second

// bounded runs fn on h's client, releasing h when fn returns, which may be
// after bounded itself has returned: answered is false then.
//
// The client can wedge (v4.2.0): a discovery that fails ends its connection
// loop, and a call that got past its closed check just before waits for that
// loop forever, as does every later call. So a call still running wedgeGrace
// after its context ended gets its client replaced. Only then: a caller that
// gives up early (a cancelled request, a short deadline) must not cost every
// other caller a new connection.
func bounded[T any](ctx context.Context, c *Conn, h *handle, fn func(context.Context, *esdb.Client) (T, error)) (_ T, _ error, answered bool) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer c.release(h)
		v, err := fn(ctx, h.client)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err, true
	case <-ctx.Done():
		go func() {
			grace := time.NewTimer(wedgeGrace)
			defer grace.Stop()
			select {
			case <-done:
			case <-grace.C:
				c.replace(h)
			}
		}()
		var zero T
		return zero, fmt.Errorf("event store call: %w", context.Cause(ctx)), false
	}
}

// SubscribeToAll subscribes to $all on c. The subscription lives as long as
// ctx, so subscribing cannot have a deadline of its own: if the store has not
// answered within timeout, cancel (which must end ctx) is called instead and
// the error is ErrTimeout. Without it a hung client would stall the caller
// for good, silently. Its span ends once subscribed; the store's goes on
// with the subscription.
func SubscribeToAll(ctx context.Context, cancel func(), c *Conn, timeout time.Duration, opts esdb.SubscribeToAllOptions) (*esdb.Subscription, error) {
	hung := time.AfterFunc(timeout, cancel)
	sub, err := Call(ctx, c, Op{Method: "SubscribeToAll", Stream: AllStream}, func(ctx context.Context, client *esdb.Client) (*esdb.Subscription, error) {
		return client.SubscribeToAll(ctx, opts)
	})
	if !hung.Stop() && err == nil {
		_ = sub.Close()
		err = ErrTimeout
	}
	return sub, err
}
