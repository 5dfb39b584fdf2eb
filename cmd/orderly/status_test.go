package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/orderly/orderly/internal/console/consoletest"
	"github.com/orderly/orderly/internal/statuscmd"
)

// TestStatus: `orderly status` prints the all-in-one's processors, all
// three of them served by the AdminService beside the commands, and
// -watch redraws the table until interrupted; the REST routes, and the
// console that calls them, are on the HTTP listener.
func TestStatus(t *testing.T) {
	addrs, _ := startSystem(t, "-log-level", "warn")
	ctx := callCtx(t)

	var out bytes.Buffer
	if err := statuscmd.Main(ctx, []string{"-admin", addrs.commands}, &out); err != nil {
		t.Fatalf("status: %v", err)
	}
	table := out.String()
	for _, want := range []string{"PROCESSOR", "LAG", "orders", "customers", "credit-saga"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "another process") {
		t.Errorf("the all-in-one lists a processor elsewhere:\n%s", table)
	}

	// -watch from the environment, as every flag: two tables, then stop.
	t.Setenv("ORDERLY_STATUS_INTERVAL", "10ms")
	wctx, wcancel := context.WithCancel(ctx)
	w := &countingWriter{every: "PROCESSOR", stop: wcancel, after: 2}
	if err := statuscmd.Main(wctx, []string{"-admin", addrs.commands, "-watch"}, w); err != nil {
		t.Fatalf("status -watch: %v", err)
	}

	resp, err := http.Get("http://" + addrs.http + "/v1/admin/processors")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/admin/processors on the all-in-one: %d", resp.StatusCode)
	}
	consoletest.Get(t, "http://"+addrs.http)
}

// countingWriter calls stop once it has seen after tables.
type countingWriter struct {
	mu    sync.Mutex
	every string
	after int
	seen  int
	stop  func()
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen += strings.Count(string(p), w.every); w.seen >= w.after {
		w.stop()
	}
	return len(p), nil
}
