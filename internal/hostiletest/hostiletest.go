// Package hostiletest measures what a hostile request costs a server running
// in the test's process: the bytes allocated while it is answered, and the
// size of the answer, both to be bounded by the request's size.
package hostiletest

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// MaxMessage is the size of a hostile gRPC request: just under gRPC's
// default receive limit, which the services keep (divided by Scale).
const MaxMessage = (4<<20 - 1<<10) / Scale

// MaxURL is the length of a hostile REST URL: just under net/http's default
// header limit (divided by Scale).
const MaxURL = (1<<20 - 4<<10) / Scale

// MaxAnswer bounds the answer to any refused request, whatever its size.
const MaxAnswer = 8 << 10

// AllocPerByte bounds the bytes the process (client and server together)
// may allocate per byte of a refused request. Decoding alone costs tens:
// an empty repeated message is 2 bytes on the wire and a ~100-byte struct
// once decoded.
const AllocPerByte = 80

// Allocated returns the bytes the process allocated while fn ran. Run it
// outside parallel tests: it counts every goroutine.
func Allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// CheckCost fails t when answering a request of size bytes allocated more
// than AllocPerByte per byte of it.
func CheckCost(t testing.TB, what string, size int, fn func()) {
	t.Helper()
	got := Allocated(fn)
	t.Logf("%s: %d-byte request, %d bytes allocated (%.1f per byte)", what, size, got, float64(got)/float64(size))
	if limit := uint64(AllocPerByte * size); got > limit {
		t.Errorf("%s: %d-byte request allocated %d bytes, more than %d per byte", what, size, got, AllocPerByte)
	}
}

// CheckGRPC sends req by call, which must refuse it as InvalidArgument with
// a status of at most MaxAnswer bytes, at a cost CheckCost accepts.
func CheckGRPC(t testing.TB, what string, req proto.Message, call func(proto.Message) error) {
	t.Helper()
	size := proto.Size(req)
	if size > MaxMessage {
		t.Fatalf("%s: %d-byte request, over %d", what, size, MaxMessage)
	}
	var err error
	CheckCost(t, what, size, func() { err = call(req) })
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Errorf("%s: status %v, want %v", what, err, codes.InvalidArgument)
	}
	if n := proto.Size(st.Proto()); n > MaxAnswer {
		t.Errorf("%s: status of %d bytes, want at most %d", what, n, MaxAnswer)
	}
}

// CheckREST sends a REST request, which must be refused with 400 and a
// body of at most MaxAnswer bytes, at a cost CheckCost accepts.
func CheckREST(t testing.TB, ctx context.Context, what, method, url, body string) {
	t.Helper()
	var code int
	var answer []byte
	CheckCost(t, what, len(url)+len(body), func() { code, answer = Do(t, ctx, method, url, body) })
	if code != http.StatusBadRequest {
		t.Errorf("%s: status %d, want 400", what, code)
	}
	if len(answer) > MaxAnswer {
		t.Errorf("%s: %d-byte answer, want at most %d (starts %.200q)", what, len(answer), MaxAnswer, answer)
	}
}

// Do sends a JSON request and returns the answer's status and body.
func Do(t testing.TB, ctx context.Context, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %.200s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %.200s: read answer: %v", method, url, err)
	}
	return resp.StatusCode, raw
}
