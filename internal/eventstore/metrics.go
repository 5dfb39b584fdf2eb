package eventstore

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons, the label of orderly_eventstore_subscriber_drops_total.
const (
	dropSlow     = "slow"     // its queue passed SubscriberBufferBytes
	dropShutdown = "shutdown" // the store closed
)

// metrics are the store's own, registered on Config.Registerer (the
// services' registry in the all-in-one binary).
type metrics struct {
	appends    *prometheus.CounterVec
	groupOps   prometheus.Histogram
	groupBytes prometheus.Histogram
	fsync      prometheus.Histogram
	drops      *prometheus.CounterVec
	refused    prometheus.Counter
	heldBytes  prometheus.Gauge
	panics     prometheus.Counter
	cache      *prometheus.CounterVec

	scavengeScanned prometheus.Counter
	scavengeRemoved prometheus.Counter
	scavengeBytes   prometheus.Counter
	scavengeFreed   prometheus.Counter
	scavengeRunning prometheus.Gauge
	scavenges       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_eventstore_appends_total",
			Help: "Append requests answered, by outcome (ok, wrong_version, deleted, error).",
		}, []string{"outcome"}),
		groupOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderly_eventstore_group_ops",
			Help:    "Writes answered by one group commit (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		groupBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderly_eventstore_group_bytes",
			Help:    "Bytes written by one group commit.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderly_eventstore_commit_seconds",
			Help:    "Time to commit one group with fsync.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_eventstore_subscriber_drops_total",
			Help: "Live subscriptions the store ended, by reason (slow: queue over SubscriberBufferBytes; shutdown).",
		}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_eventstore_appends_refused_total",
			Help: "Appends refused with RESOURCE_EXHAUSTED because concurrent appends held MaxPendingAppendBytes.",
		}),
		heldBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_eventstore_pending_append_bytes",
			Help: "Bytes of append requests read and not yet answered.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_eventstore_handler_panics_total",
			Help: "Calls that panicked and were answered INTERNAL.",
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_eventstore_stream_cache_total",
			Help: "Stream-state lookups by the writer, by result (hit, miss).",
		}, []string{"result"}),
		scavengeScanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_eventstore_scavenge_events_scanned_total",
			Help: "Events scavenges looked at (in streams whose metadata retires something).",
		}),
		scavengeRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_eventstore_scavenge_events_removed_total",
			Help: "Retired events scavenges removed from disk.",
		}),
		scavengeBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_eventstore_scavenge_bytes_removed_total",
			Help: "Bytes of the log and index entries scavenges removed (keys and values).",
		}),
		scavengeFreed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_eventstore_scavenge_disk_bytes_freed_total",
			Help: "Disk space completed scavenges freed: Pebble's disk usage before minus after, when it shrank.",
		}),
		scavengeRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_eventstore_scavenge_running",
			Help: "1 while a scavenge runs.",
		}),
		scavenges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_eventstore_scavenges_total",
			Help: "Scavenges ended, by result (Success, Stopped, Failed).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.appends, m.groupOps, m.groupBytes, m.fsync, m.drops, m.refused, m.heldBytes, m.panics, m.cache,
		m.scavengeScanned, m.scavengeRemoved, m.scavengeBytes, m.scavengeFreed, m.scavengeRunning, m.scavenges} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
