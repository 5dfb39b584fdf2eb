package projectorcmd_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/projectorcmd"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
)

func appendEvent(t *testing.T, c *esdb.Client, stream string, ev domain.Event) uint64 {
	t.Helper()
	data, err := eventlog.Encode(eventcodec.Default(), uuid.New(), ev, eventcodec.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.AppendToStream(context.Background(), stream, esdb.AppendToStreamOptions{}, data)
	if err != nil {
		t.Fatal(err)
	}
	return res.CommitPosition
}

// TestRunAndRebuild runs the projector command, configured partly by
// environment variables, then the rebuild command beside it.
func TestRunAndRebuild(t *testing.T) {
	conn := estest.Start(t)
	client := estest.Client(t, conn)
	data := t.TempDir()
	t.Setenv("ORDERLY_EVENTSTORE", conn)
	t.Setenv("ORDERLY_DATA", data)
	metrics := loopback.FreeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- projectorcmd.Main(ctx, []string{"-metrics-listen", metrics, "-log-level", "warn", "-batch-wait", "0"})
	}()

	appendEvent(t, client, eventlog.CustomerStream("c1"), domain.CustomerRegistered{
		CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: domain.Money{Currency: "USD", Minor: 100}})
	last := appendEvent(t, client, eventlog.OrderStream("o1"), domain.OrderPlaced{
		OrderID: "o1", CustomerID: "c1", Lines: []domain.OrderLine{{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Currency: "USD", Minor: 10}}},
		Total: domain.Money{Currency: "USD", Minor: 10}})

	store, err := sqlite.Open(ctx, filepath.Join(data, "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if _, err := views.WaitCheckpoint(wctx, store, nil, last); err != nil {
		t.Fatalf("the projector command never projected: %v", err)
	}
	if d, err := store.GetOrder(ctx, "o1"); err != nil || d.CustomerID != "c1" {
		t.Errorf("GetOrder = %+v, %v", d, err)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `orderly_projector_events_total{run="live",view="orders"}`) {
		t.Errorf("/metrics lacks the projector's event counter:\n%.2000s", body)
	}

	if err := projectorcmd.Main(ctx, []string{"rebuild", "-view", "orders", "-log-level", "warn"}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if st, err := store.State(ctx, views.Orders); err != nil || st.Live != 2 {
		t.Errorf("orders after the rebuild: %+v, %v; want version 2 live", st, err)
	}
	if st, _ := store.State(ctx, views.Customers); st.Live != 1 {
		t.Errorf("customers rebuilt too: %+v", st)
	}
	if d, err := store.GetOrder(ctx, "o1"); err != nil || d.CustomerID != "c1" {
		t.Errorf("GetOrder after the rebuild = %+v, %v", d, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("projector command = %v, want nil after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("projector command did not stop")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"rebuild", "-view", "invoices"},
		{"-views", "postgres", "-metrics-listen", ""},
		{"extra"},
	} {
		if err := projectorcmd.Main(context.Background(), args); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("Main(%q) = %v, want an error", args, err)
		}
	}
}
