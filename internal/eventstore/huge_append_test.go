//go:build !race

package eventstore_test

// hugeAppendEvents is the size of TestHugeAppendDoesNotDropLiveSubscribers'
// append: the 70,000 small events.
const hugeAppendEvents = 70_000
