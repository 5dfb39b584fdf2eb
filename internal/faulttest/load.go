package faulttest

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/faulttest/invariant"
)

// LoadConfig shapes a load.
type LoadConfig struct {
	// Clients send commands one at a time each, Pause apart; Customers are
	// registered first and receive the orders. Defaults 4, 10 and 10ms.
	Clients, Customers int
	Pause              time.Duration
	// Name sets apart the command IDs of loads run one after another on
	// one system (default "client").
	Name string
}

// Load is a set of clients sending commands through the gRPC API, the way
// a careful client does: a command that fails UNAVAILABLE,
// DEADLINE_EXCEEDED or ABORTED is retried under the same command ID until
// it is answered, so its outcome is known. Every acknowledged command is
// recorded for the invariant checker.
type Load struct {
	t      testing.TB
	client orderlyv1.CommandServiceClient
	cfg    LoadConfig
	stop   chan struct{}
	wg     sync.WaitGroup

	mu         sync.Mutex
	acks       []invariant.Ack
	codes      map[string]int
	unexpected []string
	customers  []string
	limits     int64
}

// callTimeout is a client's deadline per call; finishWithin bounds the
// retries of the commands in flight once the load stops.
const (
	callTimeout  = 5 * time.Second
	finishWithin = time.Minute
)

// StartLoad registers the customers, then starts the clients; they run
// until Stop.
func StartLoad(t testing.TB, client orderlyv1.CommandServiceClient, cfg LoadConfig) *Load {
	t.Helper()
	if cfg.Clients == 0 {
		cfg.Clients = 4
	}
	if cfg.Customers == 0 {
		cfg.Customers = 10
	}
	if cfg.Pause == 0 {
		cfg.Pause = 10 * time.Millisecond
	}
	l := &Load{t: t, client: client, cfg: cfg, stop: make(chan struct{}), codes: map[string]int{}}
	for i := range cfg.Customers {
		req := &orderlyv1.RegisterCustomerRequest{
			CommandId: fmt.Sprintf("%s-register-%d", cmp.Or(cfg.Name, "client"), i), Name: fmt.Sprintf("Customer %d", i),
			Email: fmt.Sprintf("c%d@example.com", i), CreditLimit: usd(int64(20_000 + 7_000*i)),
		}
		l.send(req.CommandId, func(ctx context.Context) (string, uint64, uint64, error) {
			res, err := client.RegisterCustomer(ctx, req)
			if err == nil {
				l.mu.Lock()
				l.customers = append(l.customers, res.CustomerId)
				l.mu.Unlock()
			}
			return eventlog.CustomerStream(res.GetCustomerId()), res.GetRevision(), res.GetPosition(), err
		})
	}
	if len(l.customers) != cfg.Customers {
		t.Fatalf("registered %d customers of %d", len(l.customers), cfg.Customers)
	}
	for c := range cfg.Clients {
		l.wg.Go(func() { l.run(c) })
	}
	return l
}

func usd(minor int64) *orderlyv1.Money {
	return &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: minor}
}

// run is one client: mostly orders, some cancelled, a few credit limit
// changes.
func (l *Load) run(id int) {
	r := rand.New(rand.NewPCG(uint64(id), 15))
	var mine []string // orders placed and not yet cancelled
	for seq := 0; ; seq++ {
		select {
		case <-l.stop:
			return
		case <-time.After(l.cfg.Pause):
		}
		cmdID := fmt.Sprintf("%s-%d-%d", cmp.Or(l.cfg.Name, "client"), id, seq)
		customer := l.customers[r.IntN(len(l.customers))]
		switch n := r.IntN(100); {
		case n < 10 && len(mine) > 0:
			i := r.IntN(len(mine))
			req := &orderlyv1.CancelOrderRequest{CommandId: cmdID, OrderId: mine[i], Reason: "changed my mind"}
			mine = append(mine[:i], mine[i+1:]...)
			l.send(cmdID, func(ctx context.Context) (string, uint64, uint64, error) {
				res, err := l.client.CancelOrder(ctx, req)
				return eventlog.OrderStream(res.GetOrderId()), res.GetRevision(), res.GetPosition(), err
			})
		case n < 13:
			// A limit no customer had before: never a no-op, which would
			// be acknowledged without an event of its own.
			l.mu.Lock()
			l.limits++
			limit := 100_000 + l.limits
			l.mu.Unlock()
			req := &orderlyv1.ChangeCreditLimitRequest{CommandId: cmdID, CustomerId: customer, CreditLimit: usd(limit)}
			l.send(cmdID, func(ctx context.Context) (string, uint64, uint64, error) {
				res, err := l.client.ChangeCreditLimit(ctx, req)
				return eventlog.CustomerStream(res.GetCustomerId()), res.GetRevision(), res.GetPosition(), err
			})
		default:
			req := &orderlyv1.PlaceOrderRequest{CommandId: cmdID, CustomerId: customer}
			for range 1 + r.IntN(2) {
				req.Lines = append(req.Lines, &orderlyv1.OrderLine{
					Sku: fmt.Sprintf("SKU-%d", r.IntN(50)), Quantity: int32(1 + r.IntN(3)), UnitPrice: usd(int64(100 + r.IntN(1_500))),
				})
			}
			var orderID string
			if l.send(cmdID, func(ctx context.Context) (string, uint64, uint64, error) {
				res, err := l.client.PlaceOrder(ctx, req)
				orderID = res.GetOrderId()
				return eventlog.OrderStream(orderID), res.GetRevision(), res.GetPosition(), err
			}) {
				mine = append(mine, orderID)
			}
		}
	}
}

// send calls call until it is answered, retrying the transient failures
// under the same command ID, and records the acknowledgement (call returns
// the stream, revision and position its answer named). It reports whether
// the command was acknowledged.
func (l *Load) send(cmdID string, call func(ctx context.Context) (stream string, rev, pos uint64, err error)) bool {
	var giveUp time.Time
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		stream, rev, pos, err := call(ctx)
		cancel()
		code := status.Code(err)
		l.mu.Lock()
		l.codes[code.String()]++
		switch code {
		case codes.OK:
			l.acks = append(l.acks, invariant.Ack{CommandID: cmdID, Stream: stream, Revision: rev, Position: pos})
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		case codes.FailedPrecondition: // a business rule: cancelling a rejected order
		default:
			l.unexpected = append(l.unexpected, fmt.Sprintf("%s: %v", cmdID, err))
		}
		l.mu.Unlock()
		switch code {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		default:
			return code == codes.OK
		}
		select {
		case <-l.stop:
			if giveUp.IsZero() {
				giveUp = time.Now().Add(finishWithin)
			}
			if time.Now().After(giveUp) {
				l.count("given up")
				return false
			}
		default:
		}
		time.Sleep(wait)
	}
}

func (l *Load) count(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[what]++
}

// Acked is the number of commands acknowledged so far.
func (l *Load) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// Answers is how many answers had code (a status code's name, or "given
// up").
func (l *Load) Answers(code string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[code]
}

// WaitProgress waits until n more commands are acknowledged than when it
// was called, failing the test after within: the clients recovered.
func (l *Load) WaitProgress(n int, within time.Duration) {
	l.t.Helper()
	from := l.Acked()
	deadline := time.Now().Add(within)
	for l.Acked() < from+n {
		if time.Now().After(deadline) {
			l.t.Fatalf("clients acknowledged %d commands in %s, want %d; answers: %s", l.Acked()-from, within, n, l.Summary())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the load: no new commands, and those in flight retried until
// answered (for at most a minute). It fails the test on any answer a
// client should never get (INTERNAL, INVALID_ARGUMENT, ...) or a command
// left unanswered, and returns the acknowledged commands.
func (l *Load) Stop() []invariant.Ack {
	l.t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range l.unexpected {
		l.t.Errorf("unexpected answer: %s", u)
	}
	if n := l.codes["given up"]; n > 0 {
		l.t.Errorf("%d commands still unanswered %s after the load stopped", n, finishWithin)
	}
	return l.acks
}

// Summary lists the answers by code.
func (l *Load) Summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmtCounts(l.codes)
}
