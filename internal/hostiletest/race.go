//go:build race

package hostiletest

// Scale divides the size of hostile requests: the race detector makes
// decoding millions of messages take minutes, and the bounds are per byte.
const Scale = 8

// Race is whether the race detector is on. Under it sync.Pool drops a
// quarter of what is put back, at random, so pooled buffers (gRPC's above
// all) are allocated anew on calls whose cost is otherwise constant: a
// small request's allocations then measure the dice, not the code.
const Race = true
