package eventstore

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// blockCache reports Pebble's block cache at each scrape: how often a read
// found its block in memory or read it from the files, and what the cache
// holds. A hit ratio that falls while the working set is small is how a
// read loading more than it returns shows (reads of snapshot page keys once
// loaded every page beside them).
type blockCache struct {
	mu     sync.RWMutex
	db     *pebble.DB // nil once the store closes
	hits   *prometheus.Desc
	misses *prometheus.Desc
	bytes  *prometheus.Desc
}

func newBlockCache(db *pebble.DB) *blockCache {
	return &blockCache{
		db:     db,
		hits:   prometheus.NewDesc("orderly_eventstore_block_cache_hits_total", "Blocks reads found in the block cache.", nil, nil),
		misses: prometheus.NewDesc("orderly_eventstore_block_cache_misses_total", "Blocks reads took from the files, not found in the block cache.", nil, nil),
		bytes:  prometheus.NewDesc("orderly_eventstore_block_cache_bytes", fmt.Sprintf("Bytes the block cache holds (at most %d MiB).", blockCacheBytes>>20), nil, nil),
	}
}

func (c *blockCache) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.hits
	ch <- c.misses
	ch <- c.bytes
}

func (c *blockCache) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return // closed: a scrape during shutdown reports nothing of it
	}
	m := c.db.Metrics().BlockCache
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(m.Hits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(m.Misses))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(m.Size))
}

// close stops the reports, before the DB closes.
func (c *blockCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.db = nil
}
