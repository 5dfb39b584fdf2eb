package eventstore

import "time"

// GroupCommits reports how many groups s has committed and how many ops
// they answered, so benchmarks can show what group commit did.
func GroupCommits(s *Server) (groups, ops uint64) {
	return s.seq.groups.Load(), s.seq.grouped.Load()
}

// SetClock makes s stamp the events it writes with now() instead of the wall
// clock, so tests can write events that $maxAge already retires. Call it
// before the first append; now itself may change its answer later.
func SetClock(s *Server, now func() time.Time) { s.seq.now = now }
