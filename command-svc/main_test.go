package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/console/consoletest"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
)

// TestConsoleServed: command-svc's REST listener serves the console beside
// the AdminService's REST routes the page calls.
func TestConsoleServed(t *testing.T) {
	consoletest.Get(t, startCommandSvc(t))
}

// TestOrdersPaced: command-svc paces the orders placed on it by its saga:
// with a lag of 1ns, orders placed by concurrent clients while the saga has
// an event unfinished wait for it (at most 20ms here), and count.
func TestOrdersPaced(t *testing.T) {
	base := startCommandSvc(t, "-order-pace-lag", "1ns", "-order-pace-wait", "20ms")
	// A saga that has not caught up once since it started paces nothing
	// (its restart backlog is worked off without holding orders back); on
	// a starved machine a CI run most likely failed so, none of 160 paced.
	for deadline := time.Now().Add(time.Minute); !sagaCaughtUp(t, base); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the saga did not catch up within a minute")
		}
	}
	var reg struct{ CustomerID string }
	post(t, base+"/v1/customers", `{"name":"Pace","email":"pace@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"100000000"}}`, &reg)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				post(t, base+"/v1/orders", `{"customerId":"`+reg.CustomerID+`","lines":[{"sku":"A","quantity":1,"unitPrice":{"currencyCode":"USD","minorUnits":"100"}}]}`, nil)
			}
		})
	}
	wg.Wait()
	_, page := get(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^orderly_saga_paced_orders_total (\d+)`).FindSubmatch(page)
	if m == nil || string(m[1]) == "0" {
		t.Fatalf("no order paced of 160 placed by 16 clients: %q", m)
	}
}

// sagaCaughtUp reports whether the AdminService at base says the saga has
// caught up.
func sagaCaughtUp(t *testing.T, base string) bool {
	t.Helper()
	code, b := get(t, base+"/v1/admin/processors")
	return code == http.StatusOK && strings.Contains(string(b), `"PROCESSOR_STATE_CAUGHT_UP"`)
}

// get returns the status and body of a GET of url.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// post sends body to url and decodes the answer into out (if not nil),
// failing the test on anything but 200 OK.
func post(t *testing.T, url, body string, out any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST %s: %s %s", url, resp.Status, b)
		return
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Errorf("POST %s: %v", url, err)
		}
	}
}

// startCommandSvc runs command-svc, its saga leasing in a SQLite file, on
// an embedded event store until the end of the test, and returns the base
// URL of its REST listener once it serves.
func startCommandSvc(t *testing.T, args ...string) string {
	t.Helper()
	// Started first, so that it stops after command-svc.
	store, httpAddr := estest.Start(t), loopback.FreeAddr(t)
	args = append([]string{"-eventstore", store, "-grpc-listen", loopback.FreeAddr(t),
		"-http-listen", httpAddr, "-log-level", "warn", "-data", t.TempDir()}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("command-svc: %v", err)
		}
	})
	base := "http://" + httpAddr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-stopped:
			stopped <- err // for the cleanup
			t.Fatalf("command-svc stopped: %v", err)
		default:
		}
		resp, err := http.Get(base + "/v1/admin/processors")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v1/admin/processors: %s", resp.Status)
			}
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("command-svc not serving REST on %s: %v", httpAddr, err)
		}
	}
}
