// Package console is the operator's web page, /console: processors with
// their lag and state, dead letters with retry and skip, rebuild progress
// and a stream browser. It is one HTML file with its script inline,
// embedded in the binary, that calls the AdminService's REST routes of
// the same origin: no build step, nothing fetched from elsewhere.
package console

import (
	_ "embed"
	"net/http"
)

//go:embed console.html
var page []byte

// Path is where the page is served.
const Path = "/console"

// Handler serves the page. Its content security policy allows only this
// origin, so the page can reach nothing else even if a stored event's text
// tried (it is inserted as text, never as HTML).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	})
}
