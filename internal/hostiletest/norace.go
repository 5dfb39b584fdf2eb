//go:build !race

package hostiletest

// Scale divides the size of hostile requests: 1, full size, without the
// race detector.
const Scale = 1

// Race is whether the race detector is on; see race.go.
const Race = false
