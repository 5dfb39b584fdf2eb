package saga_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/metrictest"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// running is a saga started by a test, with its own metrics.
type running struct {
	*saga.Saga
	metrics *prometheus.Registry
	stop    func()
}

// startSaga runs a saga on env until stop or the end of the test.
func startSaga(t testing.TB, env *commandtest.Env, opts saga.Options) *running {
	t.Helper()
	return startSagaWith(t, env, env.Service, opts)
}

// startSagaWith runs a saga that issues its commands to cmds.
func startSagaWith(t testing.TB, env *commandtest.Env, cmds saga.Commands, opts saga.Options) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 20 * time.Millisecond
	}
	if opts.Leases == nil {
		opts.Leases = leasesFor(t, env)
	}
	if opts.Lease.TTL == 0 {
		opts.Lease.TTL = testLeaseTTL
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := saga.New(env.Conn, cmds, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("saga Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("saga did not stop within 15s of its context ending")
		}
	}
	t.Cleanup(stop)
	return &running{Saga: s, metrics: reg, stop: stop}
}

// inAnotherLane registers customers of the given limit until one is in a
// lane other than customer's, among workers lanes, and returns it.
func inAnotherLane(t testing.TB, env *commandtest.Env, customer string, workers int, limit int64) string {
	t.Helper()
	for {
		if c := env.RegisterCustomer(t, limit); saga.LaneOf(c, workers) != saga.LaneOf(customer, workers) {
			return c
		}
	}
}

// testLeaseTTL is short, so that a saga killed without releasing its
// partitions is taken over soon.
const testLeaseTTL = time.Second

var (
	leaseStoresMu sync.Mutex
	leaseStores   = map[*commandtest.Env]leaseStore{}
)

type leaseStore struct {
	path  string
	store *sqlite.Store
}

// leasesFor is the lease store of env's sagas (a SQLite file, as on one
// host), opened once per env so that sagas started one after the other
// share their checkpoints.
func leasesFor(t testing.TB, env *commandtest.Env) *sqlite.Store {
	return leaseStoreOf(t, env).store
}

func leaseStoreOf(t testing.TB, env *commandtest.Env) leaseStore {
	t.Helper()
	leaseStoresMu.Lock()
	defer leaseStoresMu.Unlock()
	if ls, ok := leaseStores[env]; ok {
		return ls
	}
	path := filepath.Join(t.TempDir(), "leases.db")
	store, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ls := leaseStore{path: path, store: store}
	leaseStores[env] = ls
	t.Cleanup(func() {
		leaseStoresMu.Lock()
		delete(leaseStores, env)
		leaseStoresMu.Unlock()
		_ = store.Close()
	})
	return ls
}

// savedCheckpoint is the lowest saved checkpoint of env's saga
// partitions, 0 if one has none.
func savedCheckpoint(t testing.TB, env *commandtest.Env) uint64 {
	t.Helper()
	cp, err := saga.Checkpoint(ctx(t), leasesFor(t, env), "")
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// metric sums a counter's or a gauge's values over all its labels.
func (r *running) metric(t testing.TB, name string) float64 {
	t.Helper()
	return metrictest.Sum(t, r.metrics, name)
}

// eventually polls cond until it holds or timeout passes; cond explains
// what it is still waiting for.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctx(t testing.TB) context.Context { return commandtest.Ctx(t, 30*time.Second) }

// placed is an order a test placed, with what it expects of it.
type placed struct {
	id, customer string
	total        int64
	cancelled    bool // the test cancelled it successfully
}

// place places a one-line order of total cents.
func place(t *testing.T, env *commandtest.Env, customer string, total int64) placed {
	t.Helper()
	return placed{id: env.PlaceOrder(t, customer, total), customer: customer, total: total}
}

// cancel cancels o; an order the saga already rejected cannot be cancelled,
// which is fine too.
func cancel(t *testing.T, env *commandtest.Env, o *placed) {
	t.Helper()
	_, err := env.API.CancelOrder(ctx(t), &orderlyv1.CancelOrderRequest{OrderId: o.id, Reason: "test"})
	if err == nil {
		o.cancelled = true
		return
	}
	if env.Order(t, o.id).Status != domain.StatusRejected {
		t.Fatalf("cancel %s: %v", o.id, err)
	}
}

// settled checks the saga's promise over orders once it has caught up: no
// order is PENDING, cancelled orders are CANCELLED, and every customer holds
// exactly the credit of its approved orders, each reserved once, and none
// for orders in any other state.
func settled(t *testing.T, env *commandtest.Env, orders []placed) (bool, string) {
	t.Helper()
	held := map[string]int64{}
	customers := map[string]*domain.Customer{}
	for _, o := range orders {
		c, ok := customers[o.customer]
		if !ok {
			c = env.Customer(t, o.customer)
			customers[o.customer] = c
		}
		st := env.Order(t, o.id).Status
		switch {
		case st == domain.StatusPending:
			return false, fmt.Sprintf("order %s still PENDING", o.id)
		case o.cancelled && st != domain.StatusCancelled:
			return false, fmt.Sprintf("cancelled order %s is %v", o.id, st)
		case st == domain.StatusApproved:
			held[o.customer] += o.total
			if !c.HasReservation(o.id) {
				return false, fmt.Sprintf("approved order %s holds no credit", o.id)
			}
		case c.HasReservation(o.id):
			return false, fmt.Sprintf("order %s is %v but still holds credit", o.id, st)
		}
	}
	for id, c := range customers {
		if c.Reserved.Minor != held[id] {
			return false, fmt.Sprintf("customer %s holds %d; its approved orders total %d", id, c.Reserved.Minor, held[id])
		}
		if c.Reserved.Minor > c.CreditLimit.Minor {
			return false, fmt.Sprintf("customer %s holds %d over its limit %d", id, c.Reserved.Minor, c.CreditLimit.Minor)
		}
	}
	return true, ""
}

// streamEvents counts the events of the orders' and their customers' streams.
func streamEvents(t *testing.T, env *commandtest.Env, orders []placed) int {
	return len(aggregateEvents(t, env, orders))
}

// sagaEvents are the events among them that the saga reacts to.
func sagaEvents(t *testing.T, env *commandtest.Env, orders []placed) []eventlog.Recorded {
	var out []eventlog.Recorded
	for _, r := range aggregateEvents(t, env, orders) {
		switch r.Event.(type) {
		case domain.OrderPlaced, domain.OrderCancelled, domain.CreditReserved, domain.CreditLimitExceeded:
			out = append(out, r)
		}
	}
	return out
}

func aggregateEvents(t *testing.T, env *commandtest.Env, orders []placed) []eventlog.Recorded {
	t.Helper()
	var all []eventlog.Recorded
	seen := map[string]bool{}
	for _, o := range orders {
		all = append(all, env.History(t, eventlog.OrderStream(o.id))...)
		if !seen[o.customer] {
			seen[o.customer] = true
			all = append(all, env.History(t, eventlog.CustomerStream(o.customer))...)
		}
	}
	return all
}
