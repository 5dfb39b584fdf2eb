package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The metrics a run follows, as the system exports them (internal/saga,
// internal/projection).
const (
	mSagaLag       = "orderly_saga_lag_seconds"
	mSagaPosition  = "orderly_saga_position"
	mProjLag       = "orderly_projector_lag_seconds"
	mProjLagEvents = "orderly_projector_lag_events"
	mProjCheckpt   = "orderly_projector_checkpoint_position"
	mPaced         = "orderly_saga_paced_orders_total"
	mPacedOut      = "orderly_saga_paced_orders_timed_out_total"
)

// maxMetricsBytes bounds one scrape: the system's whole page is a few tens
// of KiB.
const maxMetricsBytes = 8 << 20

// lagSample is one scrape's view of how far the background work is behind.
type lagSample struct {
	sagaLag float64 // seconds
	// sagaBacklog is how far the saga's position is behind the head of the
	// log (the furthest a projector knows of), in commit positions.
	sagaBacklog float64
	projLag     float64 // seconds, the worst view
	projEvents  float64 // commit positions, the worst view
	// paced and pacedOut are the saga's counters of the orders it held
	// back, and of those that went ahead with it still behind.
	paced, pacedOut float64
}

// parseMetrics reads the series named in want from a Prometheus text page,
// keyed by the series' name and labels as written ("name{a=\"b\"}").
func parseMetrics(r io.Reader, want func(name string) bool) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line+" ", "{ ")]
		if !want(name) {
			continue
		}
		// The series ends at the last '}' or else at the name; the value
		// follows it (a timestamp may follow the value).
		end := len(name)
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			end = i + 1
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[line[:end]] = v
	}
	return out, sc.Err()
}

// lagOf reduces a page's series to one sample; ok is false when the page
// has no saga (it runs in command-svc, which may not be the page scraped).
func lagOf(series map[string]float64) (s lagSample, ok bool) {
	s.sagaLag, ok = series[mSagaLag]
	s.paced, s.pacedOut = series[mPaced], series[mPacedOut]
	sagaPos, hasPos := series[mSagaPosition]
	head := math.Inf(-1)
	for k, v := range series {
		name, labels, _ := strings.Cut(k, "{")
		switch name {
		case mProjLag:
			s.projLag = max(s.projLag, v)
		case mProjLagEvents:
			s.projEvents = max(s.projEvents, v)
			head = max(head, v+series[mProjCheckpt+"{"+labels])
		}
	}
	if hasPos && !math.IsInf(head, -1) {
		s.sagaBacklog = max(head-sagaPos, 0)
	}
	return s, ok
}

// scraper fetches the metrics page and keeps the worst and the last sample.
type scraper struct {
	url    string
	client *http.Client

	mu           sync.Mutex
	n            int
	first        lagSample // the counters from here on are the run's
	worst, final lagSample
	err          error // the last scrape's failure, if it failed
}

func (s *scraper) scrape(ctx context.Context) (lagSample, error) {
	sample, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	if err != nil {
		return sample, err
	}
	if s.n == 0 {
		s.first = sample
	}
	s.n++
	s.final = sample
	s.worst = lagSample{
		sagaLag:     max(s.worst.sagaLag, sample.sagaLag),
		sagaBacklog: max(s.worst.sagaBacklog, sample.sagaBacklog),
		projLag:     max(s.worst.projLag, sample.projLag),
		projEvents:  max(s.worst.projEvents, sample.projEvents),
	}
	return sample, nil
}

func (s *scraper) fetch(ctx context.Context) (lagSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return lagSample{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return lagSample{}, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return lagSample{}, fmt.Errorf("scrape %s: HTTP %d", s.url, resp.StatusCode)
	}
	series, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBytes), func(name string) bool {
		switch name {
		case mSagaLag, mSagaPosition, mProjLag, mProjLagEvents, mProjCheckpt, mPaced, mPacedOut:
			return true
		}
		return false
	})
	if err != nil {
		return lagSample{}, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	sample, ok := lagOf(series)
	if !ok {
		return sample, fmt.Errorf("scrape %s: no %s (is the saga served there?)", s.url, mSagaLag)
	}
	return sample, nil
}

func (s *scraper) summary() (n int, worst, final lagSample, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.worst, s.final, s.err
}

// paced counts the orders the saga held back between the first scrape and
// the last, and those of them that went ahead with it still behind.
func (s *scraper) paced() (held, timedOut float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final.paced - s.first.paced, s.final.pacedOut - s.first.pacedOut
}
