// Package runs keeps a large map of fixed-width keys and values as sorted,
// immutable runs: byte strings of entries (key then value), each run sorted
// by key, newer runs shadowing older ones, as in an LSM tree.
//
// It exists for loading: a run is taken as it was stored (a slice of a
// snapshot page), with no per-entry work, where a Go map would hash and
// insert every entry — three quarters of a million-entry aggregate's load.
// Lookups binary-search the runs newest first; Compact merges runs so that
// their number stays logarithmic in the entries. Runs hold no pointers, so
// the garbage collector does not scan them either.
package runs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"sync"
)

// Stack is a map held as runs. Its methods are safe for concurrent use, so
// Compact can run in the background while the owner reads and pushes.
type Stack struct {
	keyLen, width int

	mu         sync.Mutex
	runs       []string // oldest first
	bytes      int
	compacting bool
}

// New returns an empty stack of entries of width bytes, the first keyLen
// (1 to 16) of which are the key.
func New(keyLen, width int) *Stack {
	if keyLen < 1 || keyLen > 16 || width < keyLen {
		panic("runs: keys must be 1 to 16 bytes, within the entry")
	}
	return &Stack{keyLen: keyLen, width: width}
}

// ErrMalformed reports a run that is not a whole number of entries with
// strictly increasing keys: lookups in it would miss entries it holds.
var ErrMalformed = errors.New("malformed run")

// Push adds run, newer than every run already pushed. The run is kept as
// given (not copied): it must not change afterwards.
func (s *Stack) Push(run string) error {
	if len(run)%s.width != 0 {
		return ErrMalformed
	}
	for off := s.width; off < len(run); off += s.width {
		if run[off-s.width:off-s.width+s.keyLen] >= run[off:off+s.keyLen] {
			return ErrMalformed
		}
	}
	if run == "" {
		return nil
	}
	s.mu.Lock()
	s.runs = append(s.runs, run)
	s.bytes += len(run)
	s.mu.Unlock()
	return nil
}

// Get returns the value of key (of keyLen bytes) in the newest run holding
// it.
func (s *Stack) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.runs) - 1; i >= 0; i-- {
		if v, ok := s.find(s.runs[i], key); ok {
			return v, true
		}
	}
	return "", false
}

func (s *Stack) find(run, key string) (string, bool) { return Find(run, key, s.keyLen, s.width) }

// Find returns the value of key in one sorted run of entries of width bytes,
// the first keyLen of which are the key: a run a snapshot page holds, looked
// up without pushing it on a Stack.
func Find(run, key string, keyLen, width int) (string, bool) {
	n := len(run) / width
	j := sort.Search(n, func(j int) bool { return run[j*width:j*width+keyLen] >= key })
	if j < n && run[j*width:j*width+keyLen] == key {
		return run[j*width+keyLen : (j+1)*width], true
	}
	return "", false
}

// Bytes is the size of the runs, shadowed entries included.
func (s *Stack) Bytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Runs is how many runs there are.
func (s *Stack) Runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.runs)
}

// NeedsCompaction reports whether Compact has runs to merge.
func (s *Stack) NeedsCompaction() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.compacting && s.toMerge() >= 0
}

// toMerge is the first run of the suffix to merge, or -1: the longest suffix
// of two runs or more whose first run is at most twice the rest together.
// Merging it keeps run sizes falling geometrically from the oldest, so there
// are O(log n) runs and each entry is merged O(log n) times; the load's
// thousand equal runs merge into one. Runs with no room in the rule stay.
func (s *Stack) toMerge() int {
	rest := 0
	first := -1
	for i := len(s.runs) - 1; i >= 0; i-- {
		if rest > 0 && len(s.runs[i]) <= 2*rest {
			first = i
		}
		rest += len(s.runs[i])
	}
	return first
}

// Compact merges runs while the rule of toMerge finds some, the newest entry
// of each key winning. The merge runs outside the lock, so lookups and pushes
// go on meanwhile; a call while another compacts returns at once.
func (s *Stack) Compact() {
	s.mu.Lock()
	if s.compacting {
		s.mu.Unlock()
		return
	}
	s.compacting = true
	defer func() {
		s.mu.Lock()
		s.compacting = false
		s.mu.Unlock()
	}()
	for {
		first := s.toMerge()
		if first < 0 {
			s.mu.Unlock()
			return
		}
		merging := slices.Clone(s.runs[first:])
		s.mu.Unlock()

		merged := s.merge(merging)

		s.mu.Lock()
		// Only this call removes runs (Push appends): runs[first:] begin
		// with the ones merged.
		s.runs = slices.Replace(s.runs, first, first+len(merging), merged)
		s.bytes += len(merged)
		for _, r := range merging {
			s.bytes -= len(r)
		}
	}
}

// merge merges runs (oldest first) into one, in one pass: a heap with an
// item a run, ordered by the key at the run's cursor and then newest first,
// so that the first entry of each key to come out is the one that counts.
// Keys compare as integers, each decoded once; items hold no pointers, so
// moving them in the heap is plain copying.
func (s *Stack) merge(runs []string) string {
	if len(runs) == 1 {
		return runs[0]
	}
	size := 0
	offs := make([]int, len(runs))
	h := make(mergeHeap, 0, len(runs))
	for i, r := range runs {
		size += len(r)
		if r != "" {
			h = append(h, mergeItem{s.keyAt(r, 0), i})
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	out := make([]byte, 0, size)
	var last key
	for n := 0; len(h) > 0; n++ {
		top := &h[0]
		r, off := runs[top.run], offs[top.run]
		if n == 0 || top.key != last {
			out = append(out, r[off:off+s.width]...)
			last = top.key
		}
		off += s.width
		offs[top.run] = off
		if off < len(r) {
			top.key = s.keyAt(r, off)
		} else {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		h.down(0)
	}
	return string(out)
}

// key is an entry's key (up to 16 bytes) as big-endian integers, so that it
// orders as its bytes do.
type key struct{ hi, lo uint64 }

func (s *Stack) keyAt(run string, off int) key {
	var b [16]byte
	copy(b[:], run[off:off+s.keyLen])
	return key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

type mergeItem struct {
	key key
	run int // the run's place, newer runs larger
}

type mergeHeap []mergeItem

func (h mergeHeap) before(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.key.hi != b.key.hi {
		return a.key.hi < b.key.hi
	}
	if a.key.lo != b.key.lo {
		return a.key.lo < b.key.lo
	}
	return a.run > b.run
}

func (h mergeHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.before(r, l) {
			m = r
		}
		if !h.before(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Sort sorts the entries of b (of width bytes, keyed by their first keyLen)
// in place, to make a run of them. Keys must be distinct.
func Sort(b []byte, keyLen, width int) {
	sort.Sort(entries{b, keyLen, width, make([]byte, width)})
}

type entries struct {
	b             []byte
	keyLen, width int
	tmp           []byte
}

func (e entries) Len() int { return len(e.b) / e.width }
func (e entries) Less(i, j int) bool {
	return bytes.Compare(e.b[i*e.width:i*e.width+e.keyLen], e.b[j*e.width:j*e.width+e.keyLen]) < 0
}
func (e entries) Swap(i, j int) {
	a, b := e.b[i*e.width:(i+1)*e.width], e.b[j*e.width:(j+1)*e.width]
	copy(e.tmp, a)
	copy(a, b)
	copy(b, e.tmp)
}
