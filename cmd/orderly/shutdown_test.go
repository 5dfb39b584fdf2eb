package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/serve"
)

// TestShutdownUnderLoad stops the all-in-one while commands keep coming,
// with a WatchOrder stream open and a read waiting for min_position: the
// watch and the wait end with UNAVAILABLE "server shutting down", every
// command either answered OK with its events in the store or was refused
// without them (none committed behind an error), every phase finished in
// its time, the saga saved its checkpoint on the way out and the command
// side its snapshot pages, and every store closed.
func TestShutdownUnderLoad(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	listening := make(chan allAddrs, 1)
	stopped := make(chan error, 1)
	const grace = 30 * time.Second
	go func() {
		stopped <- startAll(ctx, []string{"-data", dir, "-log-level", "info", "-shutdown-timeout", grace.String(),
			"-eventstore-listen", "127.0.0.1:0", "-commands-listen", "127.0.0.1:0",
			"-queries-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0"}, func(a allAddrs) { listening <- a }, &logs)
	}()
	var addrs allAddrs
	select {
	case addrs = <-listening:
	case err := <-stopped:
		t.Fatalf("startAll: %v\n%s", err, logs.String())
	}
	dial := func(addr string) *grpc.ClientConn {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	commands := orderlyv1.NewCommandServiceClient(dial(addrs.commands))
	queries := orderlyv1.NewQueryServiceClient(dial(addrs.queries))
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ccancel()

	usd := func(n int64) *orderlyv1.Money { return &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: n} }
	register := func(id string) (string, error) {
		r, err := commands.RegisterCustomer(cctx, &orderlyv1.RegisterCustomerRequest{CommandId: id, Name: id, Email: "a@example.com", CreditLimit: usd(1000)})
		return r.GetCustomerId(), err
	}
	place := func(id, customer string) (*orderlyv1.PlaceOrderResponse, error) {
		return commands.PlaceOrder(cctx, &orderlyv1.PlaceOrderRequest{CommandId: id, CustomerId: customer,
			Lines: []*orderlyv1.OrderLine{{Sku: id, Quantity: 1, UnitPrice: usd(10)}}})
	}
	customer, err := register("watched")
	if err != nil {
		t.Fatal(err)
	}
	order, err := place("watched-order", customer)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := queries.WatchOrder(cctx, &orderlyv1.WatchOrderRequest{OrderId: order.OrderId})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("watch: %v", err)
	}

	// Load: each client registers a customer and places an order for it,
	// named by their command IDs, until a call fails.
	var mu sync.Mutex
	answered := map[string]error{} // by command ID, which is also the name or SKU stored
	var okCount int
	running := make(chan struct{}) // closed once 40 commands succeeded
	record := func(id string, err error) {
		mu.Lock()
		defer mu.Unlock()
		answered[id] = err
		if err == nil {
			if okCount++; okCount == 40 {
				close(running)
			}
		}
	}
	var clients sync.WaitGroup
	for c := range 8 {
		clients.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("c%d-%d", c, i)
				cust, err := register(id)
				record(id, err)
				if err != nil {
					return
				}
				_, err = place(id+"-order", cust)
				record(id+"-order", err)
				if err != nil {
					return
				}
			}
		})
	}
	loadEnded := make(chan struct{})
	go func() { clients.Wait(); close(loadEnded) }()
	select {
	case <-running:
	case <-loadEnded:
		t.Fatalf("the load stopped before the shutdown: %v", answered)
	}
	read := make(chan error, 1)
	go func() {
		_, err := queries.GetOrder(cctx, &orderlyv1.GetOrderRequest{OrderId: order.OrderId, MinPosition: 1 << 60})
		read <- err
	}()
	began := time.Now()
	cancel()

	err = nil
	for err == nil { // the order's approval may come first
		_, err = watch.Recv()
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("watch ended with %v, want UNAVAILABLE server shutting down", err)
	}
	if err := <-read; status.Code(err) != codes.Unavailable {
		t.Errorf("a read waiting for min_position ended with %v, want UNAVAILABLE", err)
	}
	<-loadEnded
	if err := <-stopped; err != nil {
		t.Fatalf("startAll = %v", err)
	}
	took := time.Since(began)
	if took >= grace {
		t.Errorf("shutdown took %v, past its bound %v", took, grace)
	}
	out := logs.String()
	for _, bad := range []string{"cut short", "checkpoint not saved on shutdown", "close failed", "not closed", "snapshot pages still queued"} {
		if strings.Contains(out, bad) {
			t.Errorf("shutdown log has %q:\n%s", bad, grep(out, "shut", "saga", "close"))
		}
	}
	if !strings.Contains(out, `"msg":"saga stopped"`) {
		t.Errorf("the saga never said it stopped:\n%s", grep(out, "shut", "saga"))
	}
	t.Logf("shutdown took %v; %d commands answered OK", took, okCount)

	// Every command answered OK is stored; every one stored was answered
	// OK; the others were refused as unavailable.
	stored := committed(t, dir)
	for id, err := range answered {
		switch {
		case err == nil && !stored[id]:
			t.Errorf("command %s answered OK but is not stored", id)
		case err != nil && stored[id]:
			t.Errorf("command %s is stored but was answered %v", id, err)
		case err != nil && status.Code(err) != codes.Unavailable:
			t.Errorf("command %s answered %v, want OK or UNAVAILABLE", id, err)
		}
	}
}

// committed reopens the event store in dir and returns the command IDs of
// the customers registered and the orders placed in it (their names and
// SKUs).
func committed(t *testing.T, dir string) map[string]bool {
	t.Helper()
	store, addr, err := startEventStore("127.0.0.1:0", eventstore.Config{}, filepath.Join(dir, "eventstore"), nil, serve.Security{}, nil, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := estest.Client(t, "esdb://"+addr+"?tls=false")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ids := map[string]bool{}
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(ev.Event.StreamID, "$") || !strings.HasPrefix(ev.Event.EventType, "orderly.") {
			continue
		}
		rec, err := eventlog.Decode(eventcodec.Default(), ev.Event)
		if err != nil {
			t.Fatal(err)
		}
		switch e := rec.Event.(type) {
		case domain.CustomerRegistered:
			ids[e.Name] = true
		case domain.OrderPlaced:
			ids[e.Lines[0].SKU] = true
		}
	}
}

// grep returns the lines of s that contain any of words.
func grep(s string, words ...string) string {
	var keep []string
	for line := range strings.SplitSeq(s, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				keep = append(keep, line)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}
