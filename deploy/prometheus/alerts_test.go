// Package prometheus holds the alerting rules (alerts.yml); its test
// checks them against the metrics the services really register.
package prometheus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/views/sqlite"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertsUseRegisteredMetrics: every rule is well-formed (a name, an
// expression, a severity, a summary, a valid for) and every metric its
// expression names is one the event store, command-svc, the saga, the
// projector or the gRPC servers register; a histogram's series
// (_bucket, _sum, _count) count as its own.
func TestAlertsUseRegisteredMetrics(t *testing.T) {
	data, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	registered := registeredMetrics(t)
	seen := map[string]bool{}
	rules := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			rules++
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("group %s: rule %q is unnamed or named twice", g.Name, r.Alert)
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if err := balanced(r.Expr); err != nil {
				t.Errorf("%s: %v in %q", r.Alert, err, r.Expr)
			}
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: expression names no Orderly metric: %q", r.Alert, r.Expr)
			}
			for _, n := range names {
				if base(registered, n) == "" {
					t.Errorf("%s: metric %s is not registered by any service", r.Alert, n)
				}
			}
			for _, sel := range selector.FindAllStringSubmatch(r.Expr, -1) {
				metric := base(registered, sel[1])
				for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
					if metric != "" && !registered.labels[metric][m[1]] {
						t.Errorf("%s: %s has no label %q", r.Alert, sel[1], m[1])
					}
				}
			}
		}
	}
	if rules < 8 {
		t.Errorf("only %d rules", rules)
	}
}

var (
	// selector is a metric with label matchers; matcher one of those.
	selector = regexp.MustCompile(`\b(orderly_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// base is the registered metric series n belongs to: itself, or the
// histogram whose _bucket, _sum or _count it is; "" when none.
func base(r *recorder, n string) string {
	if r.names[n] {
		return n
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b := strings.TrimSuffix(n, suffix); b != n && r.names[b] {
			return b
		}
	}
	return ""
}

// metricNames are the Orderly metric names an expression selects.
var metricName = regexp.MustCompile(`\borderly_[a-zA-Z0-9_]+`)

func metricNames(expr string) []string { return metricName.FindAllString(expr, -1) }

// balanced checks brackets and quotes, the mistakes an edit makes most.
func balanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inQuote := false
	for _, r := range expr {
		switch {
		case r == '"':
			inQuote = !inQuote
		case inQuote:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inQuote || len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack)
	}
	return nil
}

// registeredMetrics builds each component as the binaries do, on a
// registerer that records the names of what they register.
func registeredMetrics(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{names: map[string]bool{}, labels: map[string]map[string]bool{}}
	log := slog.New(slog.DiscardHandler)

	store, err := eventstore.Open(eventstore.Config{Dir: t.TempDir(), Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	conn, err := eventlog.Connect(estest.Start(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	commands, err := command.New(conn, log, command.Options{Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(commands.Close)
	leases, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leases.Close() })
	if _, err := saga.New(conn, commands, log, saga.Options{Registerer: rec, Leases: leases}); err != nil {
		t.Fatal(err)
	}
	if _, err := projection.New(conn, nil, log, projection.Options{Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	// The RPC histogram is registered inside serve.NewMetrics, and
	// gathered once a call went through a server.
	metrics := serve.NewMetrics()
	gs, _ := serve.NewGRPCServer(log, metrics, serve.Security{})
	lis := loopback.Listen(t)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		rec.names[f.GetName()] = true
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				rec.label(f.GetName(), lp.GetName())
			}
		}
	}
	var names []string
	for n := range rec.names {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("registered: %v", names)
	return rec
}

// recorder is a prometheus.Registerer that records the fully-qualified
// names of the metrics registered on it.
type recorder struct {
	mu    sync.Mutex
	names map[string]bool
	// labels are each metric's variable labels.
	labels map[string]map[string]bool
}

var (
	fqName    = regexp.MustCompile(`fqName: "([^"]+)"`)
	varLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

func (r *recorder) label(metric, label string) {
	if r.labels[metric] == nil {
		r.labels[metric] = map[string]bool{}
	}
	r.labels[metric][label] = true
}

func (r *recorder) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc)
	go func() { c.Describe(descs); close(descs) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		r.names[m[1]] = true
		if l := varLabels.FindStringSubmatch(d.String()); l != nil && l[1] != "" {
			for _, name := range strings.Split(l[1], ",") {
				r.label(m[1], strings.TrimSpace(name))
			}
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return true }
