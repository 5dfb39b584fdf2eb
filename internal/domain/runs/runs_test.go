package runs_test

import (
	"encoding/binary"
	"errors"
	"maps"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/orderly/orderly/internal/domain/runs"
)

// run encodes m (key → value) as a run of 4-byte keys and 4-byte values.
func run(m map[uint32]uint32) string {
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = binary.BigEndian.AppendUint32(b, k)
		b = binary.BigEndian.AppendUint32(b, m[k])
	}
	return string(b)
}

func key(k uint32) string { return string(binary.BigEndian.AppendUint32(nil, k)) }

// check fails t unless s answers as model for every key below n and every
// key of model.
func check(t *testing.T, s *runs.Stack, model map[uint32]uint32, n uint32) {
	t.Helper()
	for k := range n {
		checkKey(t, s, model, k)
	}
	for k := range model {
		checkKey(t, s, model, k)
	}
}

func checkKey(t *testing.T, s *runs.Stack, model map[uint32]uint32, k uint32) {
	t.Helper()
	v, ok := s.Get(key(k))
	want, wantOK := model[k]
	if ok != wantOK || ok && binary.BigEndian.Uint32([]byte(v)) != want {
		t.Fatalf("key %d: got %x, %v; want %d, %v", k, v, ok, want, wantOK)
	}
}

// TestStackIsAMap: random runs of overlapping keys, pushed newest last and
// compacted at random points (in the background as well, while lookups and
// pushes go on), answer as one map updated in the same order.
func TestStackIsAMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	const keys = 500
	for round := range 20 {
		s, model := runs.New(4, 8), map[uint32]uint32{}
		var wg sync.WaitGroup
		for i := range 60 {
			m := map[uint32]uint32{}
			for range rng.IntN(40) {
				m[rng.Uint32N(keys)] = uint32(round*1000 + i)
			}
			if err := s.Push(run(m)); err != nil {
				t.Fatal(err)
			}
			maps.Copy(model, m)
			switch rng.IntN(4) {
			case 0:
				s.Compact()
			case 1:
				wg.Go(s.Compact)
			}
			check(t, s, model, keys)
		}
		wg.Wait()
		s.Compact()
		check(t, s, model, keys)
		if s.NeedsCompaction() {
			t.Fatalf("round %d: compacted, yet more to compact (%d runs)", round, s.Runs())
		}
	}
}

// TestCompactKeepsFewRuns: the load's many equal runs merge into one, and runs
// pushed one by one, compacted after each, stay logarithmic in number.
func TestCompactKeepsFewRuns(t *testing.T) {
	t.Parallel()
	s := runs.New(4, 8)
	next := uint32(0)
	push := func(n int) {
		m := map[uint32]uint32{}
		for range n {
			m[next] = next
			next++
		}
		if err := s.Push(run(m)); err != nil {
			t.Fatal(err)
		}
	}
	for range 1000 {
		push(10)
	}
	s.Compact()
	if n := s.Runs(); n != 1 {
		t.Fatalf("%d runs after compacting 1000 equal ones; want 1", n)
	}
	for i := range 2000 {
		push(10)
		s.Compact()
		if n, most := s.Runs(), 2*bits.Len(uint(i+1))+2; n > most {
			t.Fatalf("%d runs after %d pushes; want at most %d", n, i+1, most)
		}
	}
	if got, want := s.Bytes(), int(next)*8; got != want {
		t.Fatalf("%d bytes held; want %d (no shadowed entry)", got, want)
	}
	check(t, s, map[uint32]uint32{0: 0, 12345: 12345, next - 1: next - 1}, 0)
	if _, ok := s.Get(key(next)); ok {
		t.Fatalf("key %d found; never pushed", next)
	}
}

// TestPushRefusesMalformedRuns: a run that is not whole entries in strictly
// increasing key order would make lookups miss what it holds.
func TestPushRefusesMalformedRuns(t *testing.T) {
	t.Parallel()
	entry := func(k, v uint32) string {
		return string(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, k), v))
	}
	for name, r := range map[string]string{
		"partial":   entry(1, 1) + "abc",
		"unsorted":  entry(2, 1) + entry(1, 1),
		"duplicate": entry(1, 1) + entry(1, 2),
	} {
		if err := runs.New(4, 8).Push(r); !errors.Is(err, runs.ErrMalformed) {
			t.Errorf("%s: Push = %v; want ErrMalformed", name, err)
		}
	}
	if err := runs.New(4, 8).Push(entry(1, 1) + entry(2, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestSort: Sort makes a run of distinct entries in any order.
func TestSort(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	m := map[uint32]uint32{}
	for range 1000 {
		m[rng.Uint32()] = rng.Uint32()
	}
	sorted := run(m)
	b := []byte(sorted)
	rng.Shuffle(len(b)/8, func(i, j int) {
		var tmp [8]byte
		copy(tmp[:], b[i*8:])
		copy(b[i*8:i*8+8], b[j*8:j*8+8])
		copy(b[j*8:j*8+8], tmp[:])
	})
	runs.Sort(b, 4, 8)
	if string(b) != sorted {
		t.Fatal("Sort did not sort the entries by key")
	}
}

// BenchmarkCompactLoad: the compaction after a load, 1,000 runs of 1,000
// credit-line entries (16-byte random keys) merged into one.
func BenchmarkCompactLoad(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := make([]string, 1000)
	for i := range all {
		buf := make([]byte, 1000*25)
		for j := range 1000 {
			binary.BigEndian.PutUint64(buf[j*25:], rng.Uint64())
			binary.BigEndian.PutUint64(buf[j*25+8:], rng.Uint64())
		}
		runs.Sort(buf, 16, 25)
		all[i] = string(buf)
	}
	b.ResetTimer()
	for range b.N {
		s := runs.New(16, 25)
		for _, r := range all {
			if err := s.Push(r); err != nil {
				b.Fatal(err)
			}
		}
		s.Compact()
	}
}
