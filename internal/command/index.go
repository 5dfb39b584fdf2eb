package command

import (
	"encoding/binary"
	"errors"

	"github.com/orderly/orderly/internal/domain/runs"
)

// cmdIndex maps a hash of each command ID in a stream (idHash) to the
// revision of its last event. Like a customer's credit book it is kept as
// sealed runs (what snapshot pages store, pushed as they are on load) and
// the entries since the last seal in a map, which shadows them.
type cmdIndex struct {
	runs   *runs.Stack
	recent map[uint64]uint64
}

// A run entry: the hash, then the revision, both big-endian (so runs sort
// by hash as bytes).
const (
	indexKeyLen   = 8
	indexEntryLen = indexKeyLen + 8
)

func newCmdIndex() *cmdIndex {
	return &cmdIndex{runs: runs.New(indexKeyLen, indexEntryLen), recent: map[uint64]uint64{}}
}

func (x *cmdIndex) set(hash, rev uint64) { x.recent[hash] = rev }

func (x *cmdIndex) get(hash uint64) (uint64, bool) {
	if rev, ok := x.recent[hash]; ok {
		return rev, true
	}
	v, ok := x.runs.Get(string(binary.BigEndian.AppendUint64(nil, hash)))
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint64([]byte(v)), true
}

// seal turns the entries since the last seal into a run, and returns it.
func (x *cmdIndex) seal() string {
	buf := make([]byte, 0, len(x.recent)*indexEntryLen)
	for h, rev := range x.recent {
		buf = binary.BigEndian.AppendUint64(buf, h)
		buf = binary.BigEndian.AppendUint64(buf, rev)
	}
	runs.Sort(buf, indexKeyLen, indexEntryLen)
	run := string(buf)
	if err := x.runs.Push(run); err != nil {
		panic("command: sealed an unsorted index run: " + err.Error()) // keys of a map are distinct
	}
	clear(x.recent)
	return run
}

var errBadIndexRun = errors.New("malformed command index run")

// restore pushes a run sealed by seal, as a snapshot page kept it.
func (x *cmdIndex) restore(run string) error {
	if err := x.runs.Push(run); err != nil {
		return errBadIndexRun
	}
	return nil
}

// bytes estimates the index's memory: run bytes, and map slots.
func (x *cmdIndex) bytes() int64 {
	return int64(x.runs.Bytes()) + int64(len(x.recent))*indexEntryBytes
}
