package console_test

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/console"
	"github.com/orderly/orderly/internal/console/consoletest"
)

// TestPageIsSelfContained: /console serves the page with a same-origin
// content security policy, and the page refers to nothing outside its
// origin: no URL with a scheme or a host.
func TestPageIsSelfContained(t *testing.T) {
	srv := httptest.NewServer(console.Handler())
	defer srv.Close()
	page := consoletest.Get(t, srv.URL)
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
}
