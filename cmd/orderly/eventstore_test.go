package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
)

// The subcommand serves until its context ends; the official client can use
// it in between, and its data survives a restart.
func TestRunEventStore(t *testing.T) {
	dir := t.TempDir()
	addr := loopback.FreeAddr(t)
	run := func(body func(c *esdb.Client)) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runEventStore(ctx, []string{"-listen", addr, "-data", dir}) }()
		// The client gives up on a server that is not there yet, so wait for it.
		waitListening(t, addr)
		c := estest.Client(t, "esdb://"+addr+"?tls=false")
		body(c)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("runEventStore: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("runEventStore did not stop after its context was cancelled")
		}
	}
	run(func(c *esdb.Client) {
		ev := esdb.EventData{EventType: "e", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}
		if _, err := c.AppendToStream(context.Background(), "cmd", esdb.AppendToStreamOptions{}, ev); err != nil {
			t.Fatal(err)
		}
	})
	run(func(c *esdb.Client) {
		rs, err := c.ReadStream(context.Background(), "cmd", esdb.ReadStreamOptions{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		n := 0
		for {
			_, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 1 {
			t.Fatalf("after restart the stream has %d events, want 1", n)
		}
	})
}

func TestRunEventStoreRejectsBadFlags(t *testing.T) {
	t.Setenv("ORDERLY_EVENTSTORE_MAX_EVENT_SIZE", "huge")
	err := runEventStore(context.Background(), []string{"-data", ":memory:"})
	if err == nil || !strings.Contains(err.Error(), "ORDERLY_EVENTSTORE_MAX_EVENT_SIZE") {
		t.Fatalf("err = %v, want one naming the variable", err)
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			_ = conn.Close()
			return
		}
	}
	t.Fatalf("nothing listening on %s", addr)
}
