package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/bench"
	"github.com/orderly/orderly/internal/tlsconf/tlstest"
)

// A short bench against the embedded system: every operation of the mix
// answers, every measurement is populated, nothing fails unexpectedly, and
// -json parses. Speed is not asserted: that is what the bench is for.
func TestBenchEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	cpuProfile, heapProfile, execTrace := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "heap.pprof"), filepath.Join(dir, "trace.out")
	err := bench.Main(ctx, []string{"-json", "-duration", "3s", "-rate", "60", "-clients", "8", "-customers", "20",
		"-decision-sample", "1", "-visible-sample", "1", "-drain", "60s", "-report-every", "1s",
		"-cpuprofile", cpuProfile, "-memprofile", heapProfile, "-trace", execTrace},
		&stdout, &stderr, embeddedBench)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var s bench.Summary
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("-json output does not parse: %v\n%s", err, stdout.String())
	}
	t.Logf("live lines:\n%s", stderr.String())
	// Every recorder ran and was stopped: a profile is gzip, and a trace
	// is only complete, its header and all, once trace.Stop flushed it.
	for path, magic := range map[string]string{cpuProfile: "\x1f\x8b", heapProfile: "\x1f\x8b", execTrace: "go 1."} {
		if b, err := os.ReadFile(path); err != nil || len(b) < 1024 || !strings.HasPrefix(string(b), magic) {
			t.Errorf("%s: %d bytes, %v", filepath.Base(path), len(b), err)
		}
	}

	if s.Errors.UnexpectedTotal != 0 || len(s.Errors.Unexpected) != 0 {
		t.Errorf("unexpected errors: %v", s.Errors.Unexpected)
	}
	if !s.Config.Embedded || s.Stopped != "duration" {
		t.Errorf("config %+v, stopped %q", s.Config, s.Stopped)
	}
	for _, g := range []bench.OpGroup{s.Commands, s.Reads} {
		for name, o := range g.ByOp {
			if o.OK+o.Refused == 0 || o.Latency.Count != o.OK+o.Refused || o.Latency.P99 <= 0 {
				t.Errorf("%s: %+v", name, o)
			}
		}
	}
	if len(s.Commands.ByOp) != 5 || len(s.Reads.ByOp) != 3 {
		t.Errorf("operations reported: commands %v, reads %v", s.Commands.ByOp, s.Reads.ByOp)
	}
	if s.OpenLoop == nil || s.OpenLoop.Late.Count == 0 {
		t.Errorf("no send-lateness at a target rate: %+v", s.OpenLoop)
	}
	d := s.Decision
	if d.Approved == 0 || d.Rejected == 0 || d.Latency.Count != d.Approved+d.Rejected || d.Latency.P50 <= 0 {
		t.Errorf("decisions: %+v", d)
	}
	if d.Failed != 0 || d.TimedOut != 0 || d.Cut != 0 {
		t.Errorf("decision samples lost: %+v", d.Samples)
	}
	// Every order was sampled: each is accounted for once, and an order
	// over the limit, never cancelled, can only end REJECTED.
	placed := s.Commands.ByOp["place"].OK + s.Commands.ByOp["place_over"].OK
	if got := d.Approved + d.Rejected + d.Cancelled + d.Busy; got != placed {
		t.Errorf("%d orders placed, %d decisions accounted for: %+v", placed, got, d)
	}
	if over := s.Commands.ByOp["place_over"].OK; d.Rejected+d.Busy < over {
		t.Errorf("%d orders over the limit placed, only %d seen REJECTED (%d not watched)", over, d.Rejected, d.Busy)
	}
	v := s.WriteToVisible
	if v.Latency.Count == 0 || v.Latency.P50 <= 0 || v.Failed != 0 || v.TimedOut != 0 || v.Latency.Count+v.Busy != placed {
		t.Errorf("write-to-visible of %d orders: %+v", placed, v)
	}
	if s.Lag == nil || s.Lag.Scrapes == 0 || s.Lag.Error != "" {
		t.Errorf("lag: %+v", s.Lag)
	}
	if s.Drain == nil || !s.Drain.Cleared {
		t.Errorf("drain: %+v", s.Drain)
	}
	if !strings.Contains(stderr.String(), "cmds") {
		t.Errorf("no live line on stderr:\n%s", stderr.String())
	}
}

// The all-in-one paces orders on its saga, and the bench reports it: with a
// lag of 1ns every order placed while the saga has an event unfinished
// waits (at most 20ms here), which under 16 clients is most of them.
func TestBenchPacedOrders(t *testing.T) {
	t.Setenv("ORDERLY_ORDER_PACE_LAG", "1ns")
	t.Setenv("ORDERLY_ORDER_PACE_WAIT", "20ms")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := bench.Main(ctx, []string{"-duration", "2s", "-clients", "16", "-customers", "20", "-mix", "place=1", "-drain", "60s"},
		&stdout, &stderr, embeddedBench)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	m := regexp.MustCompile(`(\d+) orders held back for the saga before they were placed \((\d+) went ahead`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("no paced orders reported:\n%s", out)
	}
	if !strings.Contains(out, "errors: 0 unexpected") {
		t.Errorf("unexpected errors:\n%s", out)
	}
}

// Interrupted (SIGINT cancels the context), the bench stops the load at
// once and still prints the summary of what ran.
func TestBenchInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	var stderr syncBuffer // read while the bench writes it
	done := make(chan error, 1)
	go func() {
		done <- bench.Main(ctx, []string{"-json", "-duration", "10m", "-clients", "4", "-customers", "5", "-report-every", "100ms"},
			&stdout, &stderr, embeddedBench)
	}()
	// Cancel once commands are being answered (a live line with a rate
	// above zero), however slow the machine.
	answering := regexp.MustCompile(`cmds +[1-9]`)
	deadline := time.Now().Add(time.Minute)
	for !answering.MatchString(stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no command answered within a minute:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bench: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the bench did not stop after its context was cancelled")
	}
	var s bench.Summary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("no summary after the interrupt: %v\n%s", err, stdout.String())
	}
	if s.Stopped != "interrupted" || s.Commands.Total.OK == 0 || s.Errors.UnexpectedTotal != 0 {
		t.Errorf("stopped %q, %d commands, unexpected errors %v", s.Stopped, s.Commands.Total.OK, s.Errors.Unexpected)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The bench drives a system with TLS and authentication on: it trusts the
// system's certificate with -tls-ca and sends -token with every call, REST
// and metric scrapes included. Without the token the setup is refused.
func TestBenchSecured(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlstest.Pair(t, dir, "server")
	addrs, _ := startSystem(t, "-tls-cert", certFile, "-tls-key", keyFile, "-api-keys", writeKeys(t, dir), "-metrics-auth")
	args := []string{"-commands", addrs.commands, "-queries", addrs.queries, "-rest", "https://" + addrs.http,
		"-metrics", "https://" + addrs.http + "/metrics", "-tls-ca", certFile,
		"-json", "-duration", "2s", "-rate", "40", "-clients", "4", "-customers", "5", "-report-every", "0"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer
	if err := bench.Main(ctx, append(args, "-token", adminKey), &stdout, &stderr, embeddedBench); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var s bench.Summary
	if err := json.NewDecoder(&stdout).Decode(&s); err != nil {
		t.Fatalf("-json output: %v\n%s", err, stdout.String())
	}
	if s.Errors.UnexpectedTotal != 0 {
		t.Errorf("unexpected errors: %v", s.Errors.Unexpected)
	}
	if s.Commands.Total.OK == 0 || s.Reads.ByOp["get_order_rest"].OK == 0 {
		t.Errorf("commands %+v, REST reads %+v: want both answered", s.Commands.Total, s.Reads.ByOp["get_order_rest"])
	}
	if s.Lag == nil || s.Lag.Scrapes == 0 || s.Lag.Error != "" {
		t.Errorf("metric scrapes: %+v", s.Lag)
	}

	stdout.Reset()
	stderr.Reset()
	err := bench.Main(ctx, args, &stdout, &stderr, embeddedBench)
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("bench without -token: %v, want the setup refused as Unauthenticated", err)
	}
}
