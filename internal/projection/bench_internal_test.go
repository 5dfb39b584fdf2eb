package projection

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
)

// benchAppend is one append of a generated history.
type benchAppend struct {
	Stream string
	Events []domain.Event
}

// benchHistory generates a history of about n events as large appends: per
// order one (placed, then approved or rejected, one in ten approved ones
// cancelled), per customer one (registration and its credit decisions),
// after its orders.
func benchHistory(prefix string, n int) []benchAppend {
	const ordersPerCustomer = 30
	// Per order: ~2.1 order events and ~1.1 customer events.
	customers := max(1, n/(ordersPerCustomer*32/10+1))
	usd := func(n int64) domain.Money { return domain.Money{Currency: "USD", Minor: n} }
	var out []benchAppend
	for c := range customers {
		cid := fmt.Sprintf("%sc%d", prefix, c)
		cevs := []domain.Event{domain.CustomerRegistered{CustomerID: cid, Name: "Customer " + cid, Email: cid + "@example.com", CreditLimit: usd(10_000_000)}}
		for o := range ordersPerCustomer {
			oid := fmt.Sprintf("%s-%d", cid, o)
			lines := []domain.OrderLine{
				{SKU: "SKU-" + oid, Quantity: int32(1 + o%3), UnitPrice: usd(int64(100 + o))},
				{SKU: "GIFT", Quantity: 1, UnitPrice: usd(99)},
			}
			total, _ := domain.OrderTotal(lines)
			oevs := []domain.Event{domain.OrderPlaced{OrderID: oid, CustomerID: cid, Lines: lines, Total: total}}
			if o%5 == 0 {
				cevs = append(cevs, domain.CreditLimitExceeded{CustomerID: cid, OrderID: oid, Amount: total})
				oevs = append(oevs, domain.OrderRejected{OrderID: oid, CustomerID: cid, Reason: "credit limit exceeded"})
			} else {
				cevs = append(cevs, domain.CreditReserved{CustomerID: cid, OrderID: oid, Amount: total})
				oevs = append(oevs, domain.OrderApproved{OrderID: oid, CustomerID: cid})
				if o%10 == 1 {
					oevs = append(oevs, domain.OrderCancelled{OrderID: oid, CustomerID: cid})
					cevs = append(cevs, domain.CreditReleased{CustomerID: cid, OrderID: oid, Amount: total})
				}
			}
			out = append(out, benchAppend{eventlog.OrderStream(oid), oevs})
		}
		out = append(out, benchAppend{eventlog.CustomerStream(cid), cevs})
	}
	return out
}

// recorded turns a history into the records a subscription would deliver,
// at positions 1, 2, ...
func recorded(tb testing.TB, hist []benchAppend) []*esdb.RecordedEvent {
	codec := eventcodec.Default()
	var out []*esdb.RecordedEvent
	at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, a := range hist {
		for rev, ev := range a.Events {
			d, err := eventlog.Encode(codec, uuid.New(), ev, eventcodec.Metadata{CorrelationID: "bench"})
			if err != nil {
				tb.Fatal(err)
			}
			pos := uint64(len(out) + 1)
			out = append(out, &esdb.RecordedEvent{
				EventID: d.EventID, EventType: d.EventType, ContentType: "application/json", StreamID: a.Stream,
				EventNumber: uint64(rev), Position: esdb.Position{Commit: pos, Prepare: pos},
				CreatedDate: at.Add(time.Duration(pos) * time.Microsecond), Data: d.Data, UserMetadata: d.Metadata,
			})
		}
	}
	return out
}

// discardStore is a view store that keeps only checkpoints, so that what is
// measured is the projector's own work.
type discardStore struct {
	mu  sync.Mutex
	cps map[views.View]uint64
}

func newDiscardStore() *discardStore { return &discardStore{cps: map[views.View]uint64{}} }

var errDiscard = fmt.Errorf("discard store: not supported")

func (d *discardStore) State(_ context.Context, v views.View) (views.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	parts := make([]uint64, lease.DefaultPartitions)
	for i := range parts {
		parts[i] = d.cps[v]
	}
	return views.State{Live: 1, LiveCheckpoint: d.cps[v], Partitions: parts}, nil
}

func (d *discardStore) Checkpoint(context.Context) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	low := d.cps[views.Orders]
	for _, v := range views.All() {
		low = min(low, d.cps[v])
	}
	return low, nil
}

func (d *discardStore) Apply(_ context.Context, t views.Target, b views.Batch) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cps[t.View] = max(d.cps[t.View], b.Checkpoint)
	return nil
}

func (d *discardStore) LoadOrders(context.Context, views.Target, []string) (map[string]views.OrderDoc, error) {
	return nil, nil
}

func (d *discardStore) LoadCustomers(context.Context, views.Target, []string) (map[string]views.CustomerDoc, error) {
	return nil, nil
}

func (d *discardStore) GetOrder(context.Context, string) (views.OrderDoc, error) {
	return views.OrderDoc{}, errDiscard
}

func (d *discardStore) ListOrders(context.Context, views.OrderQuery) ([]views.OrderDoc, error) {
	return nil, errDiscard
}

func (d *discardStore) GetCustomer(context.Context, string) (views.CustomerDoc, error) {
	return views.CustomerDoc{}, errDiscard
}

func (d *discardStore) ListCustomers(context.Context, views.CustomerQuery) ([]views.CustomerDoc, error) {
	return nil, errDiscard
}

func (d *discardStore) BeginRebuild(context.Context, views.View) (views.Target, error) {
	return views.Target{}, errDiscard
}

func (d *discardStore) Switch(context.Context, views.Target, bool) error { return errDiscard }

func (d *discardStore) DeadLetters(context.Context, views.View) ([]views.DeadLetter, error) {
	return nil, errDiscard
}

func (d *discardStore) SetPaused(context.Context, views.View, bool) error { return errDiscard }

func (d *discardStore) Close() error { return nil }

// The discard store keeps no leases either: it stands for a store with one
// instance and no rivals, so every claim wins and nothing is ever lost.

func (d *discardStore) SetupLeases(context.Context, string, int) error { return nil }

func (d *discardStore) ScanLeases(context.Context, string) (lease.Snapshot, error) {
	return lease.Snapshot{Now: time.Now()}, nil
}

func (d *discardStore) Heartbeat(context.Context, string, string, time.Duration) error { return nil }

func (d *discardStore) Leave(context.Context, string, string) error { return nil }

func (d *discardStore) Claim(_ context.Context, _ string, p int, owner string, seen lease.Epoch, ttl time.Duration) (lease.Lease, error) {
	return lease.Lease{Partition: p, Owner: owner, Epoch: seen + 1, Expires: time.Now().Add(ttl)}, nil
}

func (d *discardStore) Renew(context.Context, string, string, map[int]lease.Epoch, time.Duration) ([]int, error) {
	return nil, nil
}

func (d *discardStore) Release(context.Context, string, string, map[int]lease.Epoch) error {
	return nil
}

func (d *discardStore) SaveCheckpoint(context.Context, string, string, int, lease.Epoch, lease.Position) error {
	return nil
}

// BenchmarkPipeline measures the projector's own work — decoding, folding,
// coalescing and partitioning every view's share of each batch — on
// records already in memory, into a store that keeps nothing.
func BenchmarkPipeline(b *testing.B) {
	events := recorded(b, benchHistory("p", 300_000))
	p, err := New(nil, newDiscardStore(), slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	var cpu CPUMeter
	cpu.Start()
	for range b.N {
		f := newFollower(p, false)
		every := map[int]lease.Epoch{}
		for p := range lease.DefaultPartitions {
			every[p] = 1
		}
		lanes, err := f.liveLanes(ctx, every)
		if err != nil {
			b.Fatal(err)
		}
		floors := make([]uint64, len(lanes))
		for start := 0; start < len(events); start += p.opts.BatchSize {
			batch := pending{events: events[start:min(start+p.opts.BatchSize, len(events))]}
			if err := f.applyAll(ctx, lanes, decodeBatch(batch, lanes, floors)); err != nil {
				b.Fatal(err)
			}
		}
		p.store.(*discardStore).cps = map[views.View]uint64{}
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
	cpu.Report(b, len(events)*b.N)
}
