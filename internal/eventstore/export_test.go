package eventstore

// GroupCommits reports how many groups s has committed and how many ops
// they answered, so benchmarks can show what group commit did.
func GroupCommits(s *Server) (groups, ops uint64) {
	return s.seq.groups.Load(), s.seq.grouped.Load()
}

// SetHandlerHook makes fn run before every handler of s, inside its panic
// recovery, so a test can make a handler panic.
func SetHandlerHook(s *Server, fn func(method string)) {
	s.testHook.Store(&fn)
}
