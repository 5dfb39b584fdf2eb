package projection

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the projector's Prometheus metrics, labelled by view and by
// run ("live" or "rebuild").
type metrics struct {
	events      *prometheus.CounterVec
	documents   *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	errors      *prometheus.CounterVec
	batchEvents *prometheus.HistogramVec
	applyTime   *prometheus.HistogramVec
	checkpoint  *prometheus.GaugeVec
	lagEvents   *prometheus.GaugeVec
	lagSeconds  *prometheus.GaugeVec
}

// Error kinds counted by orderly_projector_errors_total.
const (
	errDecode       = "decode"       // an event was dead-lettered
	errStore        = "store"        // the view store failed; the batch is retried
	errSubscription = "subscription" // the subscription failed or dropped; resubscribed
)

func newMetrics(reg prometheus.Registerer) *metrics {
	labels := []string{"view", "run"}
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_projector_events_total",
			Help: "Events of the view's streams applied (redelivered ones, which change nothing, included).",
		}, labels),
		documents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_projector_documents_total",
			Help: "View documents written, after coalescing a batch's events per document.",
		}, labels),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_projector_dead_letters_total",
			Help: "Events that could not be decoded and were parked in the dead-letter view.",
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_projector_errors_total",
			Help: "Errors by kind: decode (event dead-lettered), store (batch retried), subscription (resubscribed).",
		}, append(labels, "kind")),
		batchEvents: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderly_projector_batch_events",
			Help:    "Events of the view's streams per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}, labels),
		applyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderly_projector_batch_seconds",
			Help:    "Time to load, fold and write one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, labels),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orderly_projector_checkpoint_position",
			Help: "Commit position up to which the view has applied every event.",
		}, labels),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orderly_projector_lag_events",
			Help: "How far the checkpoint is behind the head of $all, in commit positions: events in the embedded store, log bytes in EventStoreDB.",
		}, labels),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orderly_projector_lag_seconds",
			Help: "Age of the last applied event while behind the head; 0 once caught up.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.documents, m.deadLetters, m.errors, m.batchEvents, m.applyTime,
			m.checkpoint, m.lagEvents, m.lagSeconds)
	}
	return m
}
