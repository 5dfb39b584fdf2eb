package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
)

// An operator's scavenge of a running `orderly eventstore`: the command
// starts it, follows it to its end, and the retired events are gone from
// $all; the store's /metrics counts them.
func TestScavengeCommand(t *testing.T) {
	addr, metricsAddr := loopback.FreeAddr(t), loopback.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runEventStore(ctx, []string{"-listen", addr, "-data", ":memory:", "-metrics-listen", metricsAddr})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runEventStore: %v", err)
		}
	})
	waitListening(t, addr)
	conn := "esdb://" + addr + "?tls=false"
	c := estest.Client(t, conn)
	evs := make([]esdb.EventData, 10)
	for i := range evs {
		evs[i] = esdb.EventData{EventType: "e", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}
	}
	if _, err := c.AppendToStream(context.Background(), "cmd", esdb.AppendToStreamOptions{}, evs...); err != nil {
		t.Fatal(err)
	}
	var m esdb.StreamMetadata
	m.SetMaxCount(1)
	if _, err := c.SetStreamMetadata(context.Background(), "cmd", esdb.AppendToStreamOptions{}, m); err != nil {
		t.Fatal(err)
	}

	if err := runScavenge(context.Background(), []string{"-addr", conn}); err != nil {
		t.Fatalf("scavenge: %v", err)
	}
	rs, err := c.ReadAll(context.Background(), esdb.ReadAllOptions{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var left []uint64
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Event.StreamID == "cmd" {
			left = append(left, ev.Event.EventNumber)
		}
	}
	if len(left) != 1 || left[0] != 9 {
		t.Fatalf("after the scavenge $all holds cmd %v, want [9]", left)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	res, err := hc.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), "orderly_eventstore_scavenge_events_removed_total 9") {
		t.Fatalf("/metrics does not count the 9 removed events:\n%s", body)
	}
	if err := runScavenge(context.Background(), []string{"-addr", conn, "-stop", "no-such-scavenge"}); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("stop of no scavenge: %v, want NotFound", err)
	}
}
