package eventstore

import "strconv"

// expectKind is the optimistic-concurrency condition of a write.
type expectKind int

const (
	expectAny expectKind = iota
	expectNoStream
	expectExists
	expectRevision
)

type expectation struct {
	kind expectKind
	rev  uint64 // for expectRevision
}

func (e expectation) String() string {
	switch e.kind {
	case expectNoStream:
		return "no stream"
	case expectExists:
		return "stream exists"
	case expectRevision:
		return strconv.FormatUint(e.rev, 10)
	}
	return "any"
}

// verdictKind is what a write's expectation says against a stream's state.
type verdictKind int

const (
	verdictWrite   verdictKind = iota // the expectation holds: write
	verdictWrong                      // wrong expected version
	verdictDeleted                    // the stream is tombstoned
	verdictRetry                      // the expectation is behind the stream: maybe a retried append
)

// judge applies EventStoreDB's expected-revision rules. A soft-deleted stream
// does not exist, yet may be continued from its last revision, as EventStoreDB
// allows. retryFrom is the first revision a retried append would have written.
func judge(m streamMeta, e expectation) (v verdictKind, retryFrom uint64) {
	if m.tombstoned {
		return verdictDeleted, 0
	}
	switch e.kind {
	case expectNoStream:
		if !m.exists() {
			return verdictWrite, 0
		}
		return verdictRetry, m.truncateBefore
	case expectExists:
		if m.exists() {
			return verdictWrite, 0
		}
		return verdictWrong, 0
	case expectRevision:
		switch {
		case m.next > 0 && e.rev == m.lastRevision():
			return verdictWrite, 0
		case e.rev < m.lastRevision() && m.next > 0:
			return verdictRetry, e.rev + 1
		}
		return verdictWrong, 0
	}
	return verdictWrite, 0
}
