package projection_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

func TestProgressPrinterTerminal(t *testing.T) {
	var out bytes.Buffer
	print := projection.ProgressPrinter(&out, true, quietLog())
	print(projection.Progress{View: views.Orders, Events: 500, Position: 250, Head: 1000, Rate: 5000, ETA: 3 * time.Second})
	line := out.String()
	for _, want := range []string{"\r", "orders", "[#####...............]", "25%", "500 events", "5000 ev/s", "ETA 3s"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("progress line %q ends its line before the rebuild is done", line)
	}
	print(projection.Progress{View: views.Orders, Events: 2000, Position: 1000, Head: 1000, Rate: 6000, Done: true})
	if last := out.String()[len(line):]; !strings.Contains(last, "100%") || !strings.Contains(last, "live") || !strings.HasSuffix(last, "\n") {
		t.Errorf("final progress line %q: want 100%%, live and a newline", last)
	}
}

func TestProgressPrinterLog(t *testing.T) {
	var logs bytes.Buffer
	print := projection.ProgressPrinter(nil, false, slog.New(slog.NewJSONHandler(&logs, nil)))
	print(projection.Progress{View: views.Customers, Events: 10, Position: 10, Head: 100, Rate: 100, ETA: time.Second})
	print(projection.Progress{View: views.Customers, Events: 11, Position: 11, Head: 100, Rate: 100, ETA: time.Second}) // within logEvery: not logged
	print(projection.Progress{View: views.Customers, Events: 100, Position: 100, Head: 100, Rate: 100, Done: true})
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"events":10`) || !strings.Contains(lines[1], `"done":true`) {
		t.Errorf("progress logs:\n%s\nwant the first report and the last", logs.String())
	}
}
