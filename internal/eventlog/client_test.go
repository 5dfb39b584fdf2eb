package eventlog_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

var appendOp = eventlog.Op{Method: "AppendToStream", Stream: "conn-test"}

func appendOne(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
	return c.AppendToStream(ctx, "conn-test", esdb.AppendToStreamOptions{},
		esdb.EventData{EventType: "test", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)})
}

func TestConnCallAndClose(t *testing.T) {
	t.Parallel()
	conn, err := eventlog.Connect(estest.Start(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wr, err := eventlog.Call(ctx, conn, appendOp, appendOne)
	if err != nil || wr.CommitPosition == 0 {
		t.Fatalf("append through Conn = %+v, %v", wr, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := eventlog.Call(ctx, conn, appendOp, appendOne); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("call after Close: %v; want ErrClosed", err)
	}
}

func TestConnectRefusesBadConnectionString(t *testing.T) {
	t.Parallel()
	if _, err := eventlog.Connect("http://127.0.0.1:2113", nil); err == nil {
		t.Fatal("an http:// URL was accepted")
	}
}

// TestConnHintsAtATLSMismatch: the official client reports a TLS mismatch as
// the store being unavailable; Conn's error says which setting to change,
// both ways round, and is still an outage to Unavailable.
func TestConnHintsAtATLSMismatch(t *testing.T) {
	t.Parallel()
	tlsStore := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsStore.EnableHTTP2 = true
	tlsStore.Config.ErrorLog = log.New(io.Discard, "", 0) // it logs each refused handshake
	tlsStore.StartTLS()
	t.Cleanup(tlsStore.Close)

	for _, tc := range []struct{ name, connString, want string }{
		{"TLS to a plain store", strings.Replace(estest.Start(t), "?tls=false", "", 1), "add tls=false"},
		{"plain to a TLS store", "esdb://" + strings.TrimPrefix(tlsStore.URL, "https://") + "?tls=false", "remove tls=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := eventlog.Connect(tc.connString, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err = eventlog.Call(ctx, conn, appendOp, appendOne)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !eventlog.Unavailable(err) {
				t.Fatalf("append over %s: %v; want an outage whose message says %q", tc.connString, err, tc.want)
			}
		})
	}
}

func TestAllHead(t *testing.T) {
	t.Parallel()
	conn, err := eventlog.Connect(estest.Start(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type head struct {
		pos esdb.Position
		ok  bool
	}
	read := func() head {
		h, err := eventlog.Call(ctx, conn, eventlog.Op{Method: "ReadAll", Stream: eventlog.AllStream}, func(ctx context.Context, c *esdb.Client) (head, error) {
			pos, ok, err := eventlog.AllHead(ctx, c)
			return head{pos, ok}, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := read(); h.ok {
		t.Fatalf("head of an empty store = %+v; want none", h)
	}
	var last *esdb.WriteResult
	for range 3 {
		if last, err = eventlog.Call(ctx, conn, appendOp, appendOne); err != nil {
			t.Fatal(err)
		}
	}
	if h := read(); !h.ok || h.pos.Commit != last.CommitPosition {
		t.Fatalf("head = %+v; want the last append's position %d", h, last.CommitPosition)
	}
}
