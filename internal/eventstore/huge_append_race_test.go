//go:build race

package eventstore_test

// hugeAppendEvents is smaller under the race detector, which slows delivery
// past the client's deadlines at 70,000 (see huge_append_test.go).
const hugeAppendEvents = 5_000
