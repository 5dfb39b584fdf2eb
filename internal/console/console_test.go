package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/console"
)

// TestPageIsSelfContained: /console serves the page with a same-origin
// content security policy, beside the routes it wraps, and the page
// refers to nothing outside its origin: no URL with a scheme or a host.
func TestPageIsSelfContained(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("api")) })
	srv := httptest.NewServer(console.Wrap(api))
	defer srv.Close()
	resp, err := http.Get(srv.URL + console.Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /console: %d %v", resp.StatusCode, resp.Header)
	}
	page := string(body)
	for _, id := range []string{`id="processors"`, `id="dead-letters"`, `id="events"`, `id="retry-all"`, "/v1/admin/processors", "/v1/admin/dead-letters", "/v1/admin/events"} {
		if !strings.Contains(page, id) {
			t.Errorf("the page lacks %s", id)
		}
	}
	if ext := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|src=|<link`).FindString(page); ext != "" {
		t.Errorf("the page refers outside its origin: %q", ext)
	}
	if strings.Contains(page, "innerHTML") {
		t.Error("the page inserts HTML; server text must go in as text")
	}
	resp, err = http.Get(srv.URL + "/v1/other")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "api" {
		t.Errorf("other routes reach %q; want the wrapped handler", body)
	}
}
