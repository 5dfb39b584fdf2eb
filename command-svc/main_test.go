package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/console/consoletest"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
)

// TestConsoleServed: command-svc's REST listener serves the console beside
// the AdminService's REST routes the page calls.
func TestConsoleServed(t *testing.T) {
	httpAddr := loopback.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- run(ctx, []string{"-eventstore", estest.Start(t), "-grpc-listen", loopback.FreeAddr(t),
			"-http-listen", httpAddr, "-log-level", "warn", "-data", t.TempDir()})
	}()
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
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("command-svc not serving REST on %s: %v", httpAddr, err)
		}
	}
	consoletest.Get(t, base)
}
