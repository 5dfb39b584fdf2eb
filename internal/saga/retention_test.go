package saga_test

import (
	"fmt"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/saga"
)

// TestCheckpointStreamIsBounded: the saga sets $maxCount on its checkpoint
// stream at start, so reads of it keep only the latest checkpoints while it
// still resumes from the last one; a restart finds the bound set and writes
// no new metadata. The dead-letter stream gets none (see
// DefaultCheckpointMaxCount).
func TestCheckpointStreamIsBounded(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	opts := saga.Options{CheckpointEvery: 1, CheckpointMaxCount: 2}
	first := startSaga(t, env, opts)
	cust := env.RegisterCustomer(t, 100_000)
	var orders []placed
	for range 5 {
		orders = append(orders, place(t, env, cust, 1_000))
		eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	}
	var checkpoints []*esdb.RecordedEvent
	eventually(t, converge, func() (bool, string) {
		var err error
		checkpoints, err = eventlog.ReadRaw(ctx(t), env.Store, "saga-credit-checkpoint", 0, 0)
		return err == nil && checkpoints[len(checkpoints)-1].EventNumber >= 4, fmt.Sprintf("checkpoints %d (%v)", len(checkpoints), err)
	})
	if len(checkpoints) != 2 {
		t.Fatalf("checkpoint stream reads %d events, want the latest 2 of at least 5 saves", len(checkpoints))
	}
	first.stop()

	second := startSaga(t, env, opts)
	orders = append(orders, place(t, env, cust, 1_000))
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	// From the beginning it would handle at least 12 (two per order).
	if n := second.metric(t, "orderly_saga_events_handled_total"); n >= 10 {
		t.Errorf("the restarted saga handled %v events; want it to resume from its last checkpoint", n)
	}
	meta, err := env.Store.GetStreamMetadata(ctx(t), "saga-credit-checkpoint", esdb.ReadStreamOptions{})
	if err != nil || meta.MaxCount() == nil || *meta.MaxCount() != 2 {
		t.Fatalf("checkpoint stream metadata = %+v (%v), want $maxCount 2", meta, err)
	}
	written, err := eventlog.ReadRaw(ctx(t), env.Store, "$$saga-credit-checkpoint", 0, 0)
	if err != nil || len(written) != 1 || written[0].EventNumber != 0 {
		t.Fatalf("metadata stream = %d events (%v), want one write, at revision 0", len(written), err)
	}
	if _, err := env.Store.GetStreamMetadata(ctx(t), "saga-credit-dead-letters", esdb.ReadStreamOptions{}); err == nil {
		t.Fatal("the dead-letter stream has metadata; nothing may retire its letters")
	}
}

// TestCheckpointStreamReadingEmptyMeansNoCheckpoint: a checkpoint stream
// whose metadata retires every event ($tb past its end, as new metadata on a
// soft-deleted stream sets) is no checkpoint: the saga starts from the
// beginning rather than failing to start.
func TestCheckpointStreamReadingEmptyMeansNoCheckpoint(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	var tb esdb.StreamMetadata
	tb.SetTruncateBefore(1_000)
	if _, err := env.Store.SetStreamMetadata(ctx(t), "saga-credit-checkpoint", esdb.AppendToStreamOptions{}, tb); err != nil {
		t.Fatal(err)
	}
	hidden := esdb.EventData{EventType: "saga-checkpoint", ContentType: esdb.ContentTypeJson, Data: []byte(`{"commit":999999,"prepare":999999}`)}
	if _, err := env.Store.AppendToStream(ctx(t), "saga-credit-checkpoint", esdb.AppendToStreamOptions{}, hidden); err != nil {
		t.Fatal(err)
	}
	cust := env.RegisterCustomer(t, 5_000)
	orders := []placed{place(t, env, cust, 1_000)}
	startSaga(t, env, saga.Options{})
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
}
