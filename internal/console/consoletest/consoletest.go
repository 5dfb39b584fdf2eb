// Package consoletest checks that a listener serves the console.
package consoletest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/console"
)

// Get fetches the console from base (scheme and host) and returns the page,
// failing t unless it is the console served under its content security
// policy.
func Get(t testing.TB, base string) string {
	t.Helper()
	resp, err := http.Get(base + console.Path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") || !strings.Contains(string(body), `id="processors"`) {
		t.Fatalf("GET %s%s: %d %v\n%.300s", base, console.Path, resp.StatusCode, resp.Header, body)
	}
	return string(body)
}
