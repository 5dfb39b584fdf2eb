package eventstore

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures Open. Zero values take the defaults below.
type Config struct {
	// Dir is the on-disk directory; "" keeps everything in memory (tests).
	Dir string
	// MaxEventSize bounds one event's data plus metadata, in bytes.
	MaxEventSize int
	// MaxAppendSize bounds the events of one append request, in bytes.
	MaxAppendSize int
	// MaxPendingAppendBytes bounds the bytes held by all appends read and
	// not yet answered, so many concurrent large appends cannot exhaust
	// memory before the writer sees them. At least MaxAppendSize.
	MaxPendingAppendBytes int
	// SubscriberBufferBytes is how many bytes of live events (in their wire
	// form) a subscriber may have waiting before it is dropped, so one slow
	// reader never holds back the others nor pins unbounded memory. A
	// subscriber with nothing waiting always takes the next group commit,
	// however large, so one legal append never drops a reader that keeps up.
	SubscriberBufferBytes int
	// StreamCacheBytes bounds the writer's cache of stream states; a stream
	// not in it is read from storage when next written.
	StreamCacheBytes int
	// ScavengeEvery starts a scavenge at this interval (unless one runs);
	// 0 runs none but those an operator starts.
	ScavengeEvery time.Duration
	// Registerer receives the store's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// TLS, when set, is the server configuration of every connection (see
	// tls.go); nil serves plain text.
	TLS *tls.Config
	// Access, when set, is the store's access control (see access.go); it
	// needs TLS. Nil lets every caller do everything.
	Access *Access
	// Traced records a server span for every call on the global tracer
	// provider, in the caller's trace when the call's metadata carries W3C
	// trace context. Off, no stats handler is installed: even over otel's
	// no-op provider one costs an append about 36 allocations (2.5 KB).
	Traced bool

	// fs replaces the filesystem Pebble writes to, so tests can simulate a
	// crash that keeps only synced data; nil is the OS (or memory, without Dir).
	fs vfs.FS
}

const (
	defaultMaxEventSize          = 1 << 20
	defaultMaxAppendSize         = 4 << 20
	defaultMaxPendingAppendBytes = 64 << 20
	defaultSubscriberBufferBytes = 64 << 20
	defaultStreamCacheBytes      = 16 << 20
)

func (c Config) withDefaults() (Config, error) {
	if c.MaxEventSize == 0 {
		c.MaxEventSize = defaultMaxEventSize
	}
	if c.MaxAppendSize == 0 {
		c.MaxAppendSize = defaultMaxAppendSize
	}
	if c.MaxPendingAppendBytes == 0 {
		c.MaxPendingAppendBytes = max(defaultMaxPendingAppendBytes, c.MaxAppendSize)
	}
	if c.SubscriberBufferBytes == 0 {
		c.SubscriberBufferBytes = defaultSubscriberBufferBytes
	}
	if c.StreamCacheBytes == 0 {
		c.StreamCacheBytes = defaultStreamCacheBytes
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxEventSize < 0 || c.MaxAppendSize < 0 || c.MaxPendingAppendBytes < 0 || c.SubscriberBufferBytes < 0 || c.StreamCacheBytes < 0 || c.ScavengeEvery < 0 {
		return c, fmt.Errorf("eventstore config: sizes and intervals must not be negative: %+v", c)
	}
	if c.Access != nil && c.TLS == nil {
		return c, errAccessWithoutTLS
	}
	if c.MaxEventSize > c.MaxAppendSize {
		return c, fmt.Errorf("eventstore config: MaxEventSize %d exceeds MaxAppendSize %d", c.MaxEventSize, c.MaxAppendSize)
	}
	if c.MaxAppendSize > c.MaxPendingAppendBytes {
		// One legal append must always be admissible.
		return c, fmt.Errorf("eventstore config: MaxAppendSize %d exceeds MaxPendingAppendBytes %d", c.MaxAppendSize, c.MaxPendingAppendBytes)
	}
	return c, nil
}
