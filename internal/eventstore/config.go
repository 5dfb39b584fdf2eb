package eventstore

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures Open. Zero values take the defaults below.
type Config struct {
	// Dir is the on-disk directory; "" keeps everything in memory (tests).
	Dir string
	// MaxEventSize bounds one event's data plus metadata, in bytes.
	MaxEventSize int
	// MaxAppendSize bounds the events of one append request, in bytes.
	MaxAppendSize int
	// SubscriberBuffer is how many live events a subscriber may have waiting
	// before it is dropped, so one slow reader never holds back the others.
	SubscriberBuffer int
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger

	// fs replaces the filesystem Pebble writes to, so tests can simulate a
	// crash that keeps only synced data; nil is the OS (or memory, without Dir).
	fs vfs.FS
}

const (
	defaultMaxEventSize     = 1 << 20
	defaultMaxAppendSize    = 4 << 20
	defaultSubscriberBuffer = 64 << 10
)

func (c Config) withDefaults() (Config, error) {
	if c.MaxEventSize == 0 {
		c.MaxEventSize = defaultMaxEventSize
	}
	if c.MaxAppendSize == 0 {
		c.MaxAppendSize = defaultMaxAppendSize
	}
	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = defaultSubscriberBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxEventSize < 0 || c.MaxAppendSize < 0 || c.SubscriberBuffer < 0 {
		return c, fmt.Errorf("eventstore config: sizes must not be negative: %+v", c)
	}
	if c.MaxEventSize > c.MaxAppendSize {
		return c, fmt.Errorf("eventstore config: MaxEventSize %d exceeds MaxAppendSize %d", c.MaxEventSize, c.MaxAppendSize)
	}
	return c, nil
}
