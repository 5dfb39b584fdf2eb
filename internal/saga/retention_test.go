package saga_test

import (
	"fmt"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/saga"
)

// TestLegacyCheckpointIsWhereEveryPartitionStarts: a store where an
// earlier build kept the saga's one checkpoint in its stream is taken up
// from there — every partition without a checkpoint of its own starts at
// it, so the orders before it are not decided again, and inclusively, so
// the order whose event is at the checkpoint itself is (a checkpoint can
// be a position the server reported scanning past, where EventStoreDB may
// write the next event: KurrentDB issue 4970) — and the saga bounds that
// stream with $maxCount at start (once: a restart writes no new metadata)
// and writes nothing more to it. The dead-letter stream gets no bound (see
// DefaultCheckpointMaxCount).
func TestLegacyCheckpointIsWhereEveryPartitionStarts(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 100_000)
	before := []placed{place(t, env, cust, 1_000), place(t, env, cust, 2_000)}
	head := env.Head(t)
	legacy := esdb.EventData{EventType: "saga-checkpoint", ContentType: esdb.ContentTypeJson,
		Data: fmt.Appendf(nil, `{"commit":%d,"prepare":%d}`, head, head)}
	if _, err := env.Store.AppendToStream(ctx(t), "saga-credit-checkpoint", esdb.AppendToStreamOptions{}, legacy); err != nil {
		t.Fatal(err)
	}
	opts := saga.Options{CheckpointEvery: 1, CheckpointMaxCount: 2}
	first := startSaga(t, env, opts)
	after := []placed{place(t, env, cust, 1_000)}
	eventually(t, converge, func() (bool, string) { return settled(t, env, append(after, before[1])) })
	if st := env.Order(t, before[0].id).Status; st != domain.StatusPending {
		t.Fatalf("order %s placed before the legacy checkpoint is %v; want it left PENDING", before[0].id, st)
	}
	if n := first.metric(t, "orderly_saga_events_handled_total"); n != 4 {
		t.Errorf("the saga handled %v events; want the 2 of the order at the legacy checkpoint and the 2 past it", n)
	}
	eventually(t, converge, func() (bool, string) {
		cp := savedCheckpoint(t, env)
		return cp > head, fmt.Sprintf("partitions' checkpoints at %d; want past the legacy one at %d", cp, head)
	})
	first.stop()
	startSaga(t, env, opts).stop()

	written, err := eventlog.ReadRaw(ctx(t), env.Store, "saga-credit-checkpoint", 0, 0)
	if err != nil || len(written) != 1 {
		t.Fatalf("legacy checkpoint stream = %d events (%v), want only the one written before", len(written), err)
	}
	meta, err := env.Store.GetStreamMetadata(ctx(t), "saga-credit-checkpoint", esdb.ReadStreamOptions{})
	if err != nil || meta.MaxCount() == nil || *meta.MaxCount() != 2 {
		t.Fatalf("checkpoint stream metadata = %+v (%v), want $maxCount 2", meta, err)
	}
	metaWrites, err := eventlog.ReadRaw(ctx(t), env.Store, "$$saga-credit-checkpoint", 0, 0)
	if err != nil || len(metaWrites) != 1 || metaWrites[0].EventNumber != 0 {
		t.Fatalf("metadata stream = %d events (%v), want one write, at revision 0", len(metaWrites), err)
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
