//go:build race

package hostiletest

// Scale divides the size of hostile requests: the race detector makes
// decoding millions of messages take minutes, and the bounds are per byte.
const Scale = 8
