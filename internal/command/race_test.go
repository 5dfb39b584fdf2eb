//go:build race

package command

// raceEnabled: the race detector slows the embedded store down many times.
const raceEnabled = true
