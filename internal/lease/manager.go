package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Manager; zero values take the defaults.
type Config struct {
	// Processor names the work shared, e.g. "projector"; instances of one
	// processor share its partitions.
	Processor string
	// Owner names this instance; default NewOwner(). Two live instances
	// must never share one.
	Owner string
	// Partitions is how many partitions the work is cut into (default
	// 16). It is fixed for a processor: every instance must agree, and the
	// store refuses another count (ErrPartitions).
	Partitions int
	// TTL is how long a lease lasts without renewal (default 10s): the
	// time an instance that died holds its partitions before others take
	// them over.
	TTL time.Duration
	// Tick is how often the manager heartbeats, renews, and claims or
	// releases (default a tenth of TTL, at most 1s): a partition released
	// on a clean shutdown is taken over within a tick or two, and shares
	// balance one move per tick.
	Tick time.Duration
	// StoreTimeout bounds each store call (default TTL/4, 1–5 s).
	StoreTimeout time.Duration
	// Registerer receives the manager's metrics, labelled with the
	// processor; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Defaults; see Config.
const (
	DefaultPartitions = 16
	DefaultTTL        = 10 * time.Second
)

// NewOwner returns an instance name unique in practice: the host, the
// process and a random suffix, so a restarted process is a new owner.
func NewOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Manager holds one instance's leases of one processor: it heartbeats the
// instance's membership, renews what it holds, claims free partitions up
// to its fair share, and gives back at most one partition per tick while
// it holds more than its share, so instances joining and leaving move
// partitions one at a time instead of in storms.
//
// The work it guards reads Held and starts again whenever the set changes.
// An instance that cannot renew in time stops believing it holds anything
// before its leases expire for the others; and should it believe so anyway
// (a process paused by the OS), its writes are fenced by epoch.
type Manager struct {
	store Store
	cfg   Config
	log   *slog.Logger

	mu      sync.Mutex
	held    map[int]Epoch
	changed chan struct{} // closed, and replaced, when held changes
	// validUntil is when held stops being safe to act on unless renewed:
	// the start of the last renewal that succeeded plus most of TTL, by
	// this process's monotonic clock.
	validUntil time.Time
	// members is how many live instances the last scan saw.
	members int
	metrics leaseMetrics
}

type leaseMetrics struct {
	held, members                   prometheus.Gauge
	claims, releases, lost, refused prometheus.Counter
}

func newLeaseMetrics(processor string, reg prometheus.Registerer) (leaseMetrics, error) {
	labels := prometheus.Labels{"processor": processor}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := leaseMetrics{
		held:     gauge("orderly_lease_partitions_held", "Partitions of the processor this instance holds."),
		members:  gauge("orderly_lease_members", "Live instances of the processor sharing its partitions, as this one last saw them."),
		claims:   counter("orderly_lease_claims_total", "Partitions this instance claimed (free, released or expired ones)."),
		releases: counter("orderly_lease_releases_total", "Partitions this instance gave back for another instance to balance the work."),
		lost:     counter("orderly_lease_lost_total", "Partitions this instance lost: taken by another instance, or dropped when it could not renew in time."),
		refused:  counter("orderly_lease_refused_writes_total", "Checkpoint writes the store refused because this instance no longer held the lease at that epoch."),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.held, m.members, m.claims, m.releases, m.lost, m.refused} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("lease metrics: %w", err)
			}
		}
	}
	return m, nil
}

// NewManager returns a manager of cfg.Processor's leases in store; it
// holds nothing until Run.
func NewManager(store Store, cfg Config, log *slog.Logger) (*Manager, error) {
	if cfg.Processor == "" {
		return nil, errors.New("lease: no processor name")
	}
	if cfg.Owner == "" {
		cfg.Owner = NewOwner()
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Tick == 0 {
		cfg.Tick = min(cfg.TTL/10, time.Second)
	}
	if cfg.StoreTimeout == 0 {
		// A quarter of TTL leaves a slow store several tries before the
		// leases are given up (at 90 % of TTL), and lets a call that
		// takes more than a tick still renew them.
		cfg.StoreTimeout = min(max(cfg.TTL/4, time.Second), 5*time.Second)
	}
	if cfg.Partitions < 1 || cfg.Partitions > 1024 || cfg.TTL <= 0 || cfg.Tick <= 0 || cfg.Tick > cfg.TTL/3 {
		return nil, fmt.Errorf("lease: %s: partitions must be 1..1024, TTL positive and the tick at most a third of it (partitions %d, TTL %s, tick %s)",
			cfg.Processor, cfg.Partitions, cfg.TTL, cfg.Tick)
	}
	metrics, err := newLeaseMetrics(cfg.Processor, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Manager{store: store, cfg: cfg, log: log.With("processor", cfg.Processor, "owner", cfg.Owner),
		held: map[int]Epoch{}, changed: make(chan struct{}), metrics: metrics}, nil
}

// Owner is this instance's name.
func (m *Manager) Owner() string { return m.cfg.Owner }

// Partitions is the processor's partition count.
func (m *Manager) Partitions() int { return m.cfg.Partitions }

// Partition is the partition of key.
func (m *Manager) Partition(key string) int { return Of(key, m.cfg.Partitions) }

// Held returns the partitions this instance holds, each with its epoch,
// and a channel closed at the next change.
func (m *Manager) Held() (map[int]Epoch, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.held), m.changed
}

// Share is what an instance holds of a processor's work, for operators.
type Share struct {
	Owner            string
	Held, Partitions int
	// Members is how many live instances the last scan saw.
	Members int
}

// Share returns this instance's share now.
func (m *Manager) Share() Share {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Share{Owner: m.cfg.Owner, Held: len(m.held), Partitions: m.cfg.Partitions, Members: m.members}
}

// Run sets up the processor's partitions, then keeps this instance's
// leases until ctx is done. It returns an error only when the setup is
// refused (ErrPartitions), which no retry mends; store failures are
// logged and retried every tick. The leases stay held when it returns:
// the work they guard may still be saving its last checkpoint. Release
// gives them back.
func (m *Manager) Run(ctx context.Context) error {
	for failures := 0; ; failures++ {
		err := m.call(ctx, func(ctx context.Context) error {
			return m.store.SetupLeases(ctx, m.cfg.Processor, m.cfg.Partitions)
		})
		if errors.Is(err, ErrPartitions) {
			return fmt.Errorf("%s with %d partitions: %w: every instance must run with the same count", m.cfg.Processor, m.cfg.Partitions, err)
		}
		if err == nil {
			break
		}
		if failures%10 == 0 {
			m.log.Warn("cannot set up leases; retrying", "err", err)
		}
		if !sleep(ctx, m.cfg.Tick) {
			return nil
		}
	}
	m.log.Info("sharing work", "partitions", m.cfg.Partitions, "ttl", m.cfg.TTL.String(), "tick", m.cfg.Tick.String())
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tick is one round: expire what could not be renewed in time, renew,
// heartbeat, then claim or release by the fair share. Renewal comes first:
// it is what keeps the partitions, and on a slow store a heartbeat that
// timed out must not cost them too.
func (m *Manager) tick(ctx context.Context) {
	m.expireUnrenewed()
	if err := m.renew(ctx, time.Now()); err != nil {
		m.log.Warn("lease renewal failed", "err", err)
		return
	}
	start := time.Now()
	if err := m.call(ctx, func(ctx context.Context) error {
		return m.store.Heartbeat(ctx, m.cfg.Processor, m.cfg.Owner, m.cfg.TTL)
	}); err != nil {
		m.log.Warn("lease heartbeat failed", "err", err)
		return
	}
	var snap Snapshot
	if err := m.call(ctx, func(ctx context.Context) (err error) {
		snap, err = m.store.ScanLeases(ctx, m.cfg.Processor)
		return err
	}); err != nil {
		m.log.Warn("lease scan failed", "err", err)
		return
	}
	m.balance(ctx, snap, start)
}

// expireUnrenewed drops every partition once the last successful renewal
// is too old to be sure of the leases: they expire for the others at
// about that renewal plus TTL, and this instance must stop first.
func (m *Manager) expireUnrenewed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.held) > 0 && time.Now().After(m.validUntil) {
		m.log.Warn("leases not renewed in time; giving up every partition", "partitions", slices.Sorted(maps.Keys(m.held)))
		m.metrics.lost.Add(float64(len(m.held)))
		m.setLocked(map[int]Epoch{})
	}
}

// renew renews what is held, dropping what the store says is lost.
func (m *Manager) renew(ctx context.Context, start time.Time) error {
	held, _ := m.Held()
	if len(held) == 0 {
		return nil
	}
	var lost []int
	if err := m.call(ctx, func(ctx context.Context) (err error) {
		lost, err = m.store.Renew(ctx, m.cfg.Processor, m.cfg.Owner, held, m.cfg.TTL)
		return err
	}); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := maps.Clone(m.held)
	for _, p := range lost {
		if e, ok := held[p]; ok && next[p] == e {
			delete(next, p)
		}
	}
	if gone := len(m.held) - len(next); gone > 0 {
		m.metrics.lost.Add(float64(gone))
		m.log.Warn("leases lost to another instance", "partitions", lost)
	}
	m.validUntil = start.Add(m.safeFor())
	m.setLocked(next)
	return nil
}

// grace is how long after another instance's lease expired this one
// waits before claiming it. That owner stopped trusting its lease a tenth
// of TTL before the expiry (safeFor), and may have begun a write just
// before; the grace lets such a write land before the partition changes
// hands. MongoDB fences it by epoch anyway, but a server whose filtered
// updates are not atomic (FerretDB reads, then writes back the whole
// document) could otherwise let it undo the claim.
func (m *Manager) grace() time.Duration { return m.cfg.TTL / 5 }

// safeFor is how long after a renewal began this instance trusts its
// leases: a tenth short of TTL, covering the store's and this clock's
// drift over one TTL and the renewal's own latency.
func (m *Manager) safeFor() time.Duration { return m.cfg.TTL - m.cfg.TTL/10 }

// balance claims free partitions up to this instance's fair share, and
// gives one back when it holds more than its share while another instance
// holds less. Claims of free partitions are not moves (nobody works on
// them); a release is, and there is at most one per tick.
func (m *Manager) balance(ctx context.Context, snap Snapshot, start time.Time) {
	held, _ := m.Held()
	counts := map[string]int{m.cfg.Owner: 0}
	for _, mem := range snap.Members {
		counts[mem.Owner] += 0 // a member holding nothing yet counts in the share
	}
	var free []Lease
	for _, l := range snap.Leases {
		switch {
		case l.Owner != "" && snap.Now.Before(l.Expires):
			counts[l.Owner]++
		case held[l.Partition] == l.Epoch && l.Owner == m.cfg.Owner:
			counts[l.Owner]++ // ours, renewed above; the scan saw it just expired
		case l.Owner != "" && l.Owner != m.cfg.Owner && snap.Now.Before(l.Expires.Add(m.grace())):
			counts[l.Owner]++ // expired, but its owner's last write may still be landing
		default:
			free = append(free, l)
		}
	}
	m.mu.Lock()
	m.members = len(counts)
	m.mu.Unlock()
	m.metrics.members.Set(float64(len(counts)))
	n := len(counts)
	floor, ceil := m.cfg.Partitions/n, (m.cfg.Partitions+n-1)/n
	below := func() bool { // another instance holds less than the floor
		for o, c := range counts {
			if o != m.cfg.Owner && c < floor {
				return true
			}
		}
		return false
	}
	mine := len(held)
	if mine > ceil || (mine == ceil && ceil > floor && below()) {
		m.releaseOne(ctx, held)
		return
	}
	// Start at a place of this owner's own among the free partitions, so
	// that instances claiming at once mostly try different ones. The
	// claims of one tick are published together: the work starts again
	// once per tick, not once per partition (16 times at a first start).
	off := Of(m.cfg.Owner, max(1, len(free)))
	claimed := map[int]Epoch{}
	defer func() {
		if len(claimed) == 0 {
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.held) == 0 {
			m.validUntil = start.Add(m.safeFor())
		}
		next := maps.Clone(m.held)
		maps.Copy(next, claimed)
		m.setLocked(next)
		m.log.Info("partitions claimed", "partitions", slices.Sorted(maps.Keys(claimed)), "holding", len(next))
	}()
	for i := range free {
		if mine >= ceil || (mine >= floor && below()) {
			return
		}
		l := free[(off+i)%len(free)]
		var got Lease
		err := m.call(ctx, func(ctx context.Context) (err error) {
			got, err = m.store.Claim(ctx, m.cfg.Processor, l.Partition, m.cfg.Owner, l.Epoch, m.cfg.TTL)
			return err
		})
		if errors.Is(err, ErrTaken) {
			continue
		}
		if err != nil {
			m.log.Warn("lease claim failed", "partition", l.Partition, "err", err)
			return
		}
		counts[m.cfg.Owner]++
		mine++
		claimed[got.Partition] = got.Epoch
		m.metrics.claims.Inc()
		if l.Owner != "" && l.Owner != m.cfg.Owner {
			m.log.Info("partition taken over from an instance whose lease expired", "partition", got.Partition, "epoch", got.Epoch, "previous_owner", l.Owner)
		}
	}
}

// releaseOne gives back the highest partition held, for an instance with
// fewer to claim.
func (m *Manager) releaseOne(ctx context.Context, held map[int]Epoch) {
	p := slices.Max(slices.Collect(maps.Keys(held)))
	// Stop working on it before the store frees it: from then on another
	// instance may write it, and this one's writes are refused anyway.
	m.mu.Lock()
	next := maps.Clone(m.held)
	delete(next, p)
	m.setLocked(next)
	m.mu.Unlock()
	if err := m.call(ctx, func(ctx context.Context) error {
		return m.store.Release(ctx, m.cfg.Processor, m.cfg.Owner, map[int]Epoch{p: held[p]})
	}); err != nil {
		m.log.Warn("lease release failed; it expires instead", "partition", p, "err", err)
		return
	}
	m.metrics.releases.Inc()
	m.log.Info("partition released for another instance", "partition", p)
}

// Refused records a write the store refused with ErrLost and renews at
// once, so that the work learns which partitions it still holds before it
// starts again.
func (m *Manager) Refused(ctx context.Context) {
	m.metrics.refused.Inc()
	if err := m.renew(ctx, time.Now()); err != nil {
		m.log.Warn("lease renewal failed", "err", err)
	}
}

// Release gives back every partition held and ends the membership, for a
// clean shutdown once the guarded work has stopped: other instances take
// the partitions over on their next tick instead of after TTL.
func (m *Manager) Release(ctx context.Context) error {
	m.mu.Lock()
	held := m.held
	m.setLocked(map[int]Epoch{})
	m.mu.Unlock()
	var errs []error
	if len(held) > 0 {
		errs = append(errs, m.call(ctx, func(ctx context.Context) error {
			return m.store.Release(ctx, m.cfg.Processor, m.cfg.Owner, held)
		}))
	}
	errs = append(errs, m.call(ctx, func(ctx context.Context) error {
		return m.store.Leave(ctx, m.cfg.Processor, m.cfg.Owner)
	}))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release %s leases: %w", m.cfg.Processor, err)
	}
	m.log.Info("leases released", "partitions", len(held))
	return nil
}

func (m *Manager) setLocked(next map[int]Epoch) {
	if maps.Equal(next, m.held) {
		return
	}
	m.held = next
	m.metrics.held.Set(float64(len(next)))
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Manager) call(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	return fn(ctx)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// RegisterFlags adds -partitions, -lease-ttl and -instance to fs, for
// every processor the process runs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Partitions, "partitions", DefaultPartitions,
		"partitions each processor's work is cut into, shared by its instances; every instance of a deployment must use the same count")
	fs.DurationVar(&c.TTL, "lease-ttl", DefaultTTL,
		"how long a partition's lease lasts unrenewed: an instance that dies is taken over after about this long (renewed every tenth of it, at most every second)")
	fs.StringVar(&c.Owner, "instance", "", "this instance's name among those sharing the work (default: host, process ID and a random suffix); never give two running instances the same")
}
