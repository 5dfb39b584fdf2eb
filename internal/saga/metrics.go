package saga

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	handled     *prometheus.CounterVec
	failures    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	unresolved  prometheus.Gauge
	waiting     prometheus.Gauge
	resubs      prometheus.Counter
	followUps   prometheus.Counter
	paced       prometheus.Counter
	pacedOut    prometheus.Counter
	pacedFor    prometheus.Histogram
	collected   []prometheus.Collector
}

// newMetrics reads the lag, position and in-flight gauges from w when
// scraped, so they never disagree with the checkpoint rule, the orders held
// back from paced, and the lag that holds them back from paceLag.
func newMetrics(w *marks, paced *atomic.Int32, paceLag func() time.Duration) metrics {
	m := metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_saga_events_handled_total",
			Help: "Events the credit saga finished, by event type (dead-lettered ones included).",
		}, []string{"type"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_saga_errors_total",
			Help: "Failed attempts at a credit saga step, each retried in its lane: transient (the store, a conflict) newer_schema (the event waits for an upgraded build) or follow_up (a step taken ahead of its trigger's delivery, taken again on delivery).",
		}, []string{"kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_saga_dead_letters_total",
			Help: "Events the credit saga set aside as dead letters, by reason: malformed (undecodable at its own schema), refused (an unexpected domain refusal) or panicked (a bug).",
		}, []string{"reason"}),
		unresolved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_saga_dead_letters_unresolved",
			Help: "Dead letters of the credit saga not yet replayed successfully (counted at start, and since).",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_saga_waiting_events",
			Help: "Events the credit saga waits on because their schema is newer than this build; each stalls its lane.",
		}),
		resubs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_saga_resubscriptions_total",
			Help: "Times the credit saga subscribed again after the subscription dropped.",
		}),
	}
	m.followUps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderly_saga_follow_ups_total",
		Help: "Steps the credit saga took right after the step that recorded their trigger, ahead of the trigger's delivery.",
	})
	m.paced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderly_saga_paced_orders_total",
		Help: "PlaceOrder calls held back because the credit saga was further behind than -order-pace-lag.",
	})
	m.pacedOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderly_saga_paced_orders_timed_out_total",
		Help: "Paced PlaceOrder calls that went ahead with the saga still behind: after -order-pace-wait, or at once because PaceMax (4,096 in the binaries) calls were held already.",
	})
	m.pacedFor = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "orderly_saga_pace_wait_seconds",
		Help:    "How long paced PlaceOrder calls waited for the credit saga.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
	})
	m.collected = []prometheus.Collector{m.handled, m.failures, m.deadLetters, m.unresolved, m.waiting, m.resubs, m.followUps,
		m.paced, m.pacedOut, m.pacedFor,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderly_saga_lag_seconds",
			Help: "Age of the oldest event the credit saga has received and not finished; 0 when it has finished all it received.",
		}, func() float64 { return w.lag(nil).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderly_saga_position",
			Help: "Commit position up to which the credit saga has finished every event (its checkpoint to be).",
		}, func() float64 { return float64(w.position().Commit) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderly_saga_pace_lag_seconds",
			Help: "The lag new orders are paced on: the age of the oldest unfinished event in a lane not retrying a failed step (orderly_saga_lag_seconds counts those too).",
		}, func() float64 { return paceLag().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderly_saga_paced_orders_waiting",
			Help: "PlaceOrder calls held back now, waiting for the credit saga to come back within -order-pace-lag.",
		}, func() float64 { return float64(paced.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orderly_saga_in_flight",
			Help: "Events the credit saga has dispatched to its lanes and not finished.",
		}, func() float64 { return float64(w.unfinished()) }),
	}
	return m
}
