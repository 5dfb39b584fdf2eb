package eventlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

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
	wr, err := eventlog.Call(ctx, conn, appendOne)
	if err != nil || wr.CommitPosition == 0 {
		t.Fatalf("append through Conn = %+v, %v", wr, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := eventlog.Call(ctx, conn, appendOne); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("call after Close: %v; want ErrClosed", err)
	}
}

func TestConnectRefusesBadConnectionString(t *testing.T) {
	t.Parallel()
	if _, err := eventlog.Connect("http://127.0.0.1:2113", nil); err == nil {
		t.Fatal("an http:// URL was accepted")
	}
}
