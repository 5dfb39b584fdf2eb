package faulttest

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/faulttest/invariant"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// Config chooses the system a test runs.
type Config struct {
	// Views is viewstore.SQLite (the default, in the system's directory)
	// or viewstore.Mongo at MongoURI; without MongoURI, at a FerretDB the
	// system runs as a process of its own (System.ViewDB).
	Views    string
	MongoURI string
	// StoreTimeout is every service's deadline on a store call; short by
	// default (2s), so that an outage crosses it.
	StoreTimeout time.Duration
	// ProjectorFlags are more flags for the projector.
	ProjectorFlags []string
	// Instances is how many projector processes and how many saga
	// processes share the work (default 1 of each).
	Instances int
	// LeaseTTL is the processors' lease TTL (default DefaultLeaseTTL, three
	// times that on MongoDB views).
	LeaseTTL time.Duration
}

// System is Orderly as four processes on loopback: the embedded event
// store (orderly eventstore), command-svc serving the clients without a
// saga, a second command-svc that runs only the credit saga (so killing
// the saga does not cut the clients off), and the projector.
type System struct {
	t          testing.TB
	Faults     *Faults
	EventStore *Proc
	Commands   *Proc
	// Saga and Projector are the first of Sagas and Projectors: the
	// processors, each named by its -instance (Proc.Name).
	Saga       *Proc
	Projector  *Proc
	Sagas      []*Proc
	Projectors []*Proc
	// ViewDB is the FerretDB process holding the views, if the system
	// runs one (Config.Views is viewstore.Mongo without a MongoURI).
	ViewDB *Proc
	// ConnString is the event store's connection string.
	ConnString string
	// ViewStore is where the projector keeps the views.
	ViewStore viewstore.Config
	client    orderlyv1.CommandServiceClient
}

// Start runs a fresh system in a t.TempDir, until the test ends.
func Start(t testing.TB, cfg Config) *System {
	t.Helper()
	if cfg.Views == "" {
		cfg.Views = viewstore.SQLite
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 2 * time.Second
	}
	cfg.Instances = max(cfg.Instances, 1)
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
		if cfg.Views == viewstore.Mongo {
			// A lease call has a second (lease.Config.StoreTimeout); a
			// FerretDB just restarted, under the race detector and a
			// loaded machine, took longer than that for several calls in
			// a row, and with 2 s a lone projector kept giving up its
			// partitions and claiming them back instead of projecting.
			cfg.LeaseTTL = 3 * DefaultLeaseTTL
		}
	}
	dir, faults := t.TempDir(), &Faults{}
	var viewDB *Proc
	if cfg.Views == viewstore.Mongo && cfg.MongoURI == "" {
		addr := loopback.FreeAddr(t)
		viewDB = startProc(t, faults, "ferretdb", Binary(t, "internal/faulttest/ferretdb"), addr,
			"-listen", addr, "-data", filepath.Join(dir, "ferretdb"))
		cfg.MongoURI = "mongodb://" + addr + "/"
	}
	esAddr := loopback.FreeAddr(t)
	s := &System{
		t: t, Faults: faults, ViewDB: viewDB, ConnString: fmt.Sprintf("esdb://%s?tls=false", esAddr),
		ViewStore: viewstore.Config{Kind: cfg.Views, DataDir: dir, MongoURI: cfg.MongoURI, MongoDatabase: "orderly", MongoBulkSize: 64},
	}
	orderly, commandSvc, projector := Binary(t, "cmd/orderly"), Binary(t, "command-svc"), Binary(t, "projector")
	timeout := "-store-timeout=" + cfg.StoreTimeout.String()
	// Customer snapshot pages of a few events, so that a customer has
	// several within a run: kills land amid page and page-key writes, and
	// a restarted process loads its customers from the keys of the pages
	// and looks old orders up in them.
	pages := "-snapshot-page-events=7"
	// Both processors lease their partitions in the view store; a short
	// TTL lets a restarted one take over from the one killed soon.
	viewFlags := []string{"-views", cfg.Views, "-data", dir, "-mongo-uri", cfg.MongoURI, "-mongo-db", s.ViewStore.MongoDatabase,
		"-mongo-bulk-size", fmt.Sprint(s.ViewStore.MongoBulkSize), "-lease-ttl", cfg.LeaseTTL.String()}
	s.EventStore = startProc(t, s.Faults, "eventstore", orderly, esAddr,
		"eventstore", "-listen", esAddr, "-data", filepath.Join(dir, "eventstore"))

	for i := range cfg.Instances {
		name, metrics := fmt.Sprintf("projector-%d", i+1), loopback.FreeAddr(t)
		s.Projectors = append(s.Projectors, startProc(t, s.Faults, name, projector, metrics, slices.Concat([]string{
			"-eventstore", s.ConnString, "-metrics-listen", metrics, timeout, "-log-level", "warn", "-instance", name,
		}, viewFlags, cfg.ProjectorFlags)...))
		s.Projectors[i].HTTP = metrics
	}
	for i := range cfg.Instances {
		name, grpcAddr, httpAddr := fmt.Sprintf("saga-%d", i+1), loopback.FreeAddr(t), loopback.FreeAddr(t)
		s.Sagas = append(s.Sagas, startProc(t, s.Faults, name, commandSvc, grpcAddr, slices.Concat([]string{
			"-eventstore", s.ConnString, "-grpc-listen", grpcAddr, "-http-listen", httpAddr, timeout, pages, "-log-level", "warn",
			"-saga=true", "-saga-workers", "16", "-instance", name}, viewFlags)...))
		s.Sagas[i].HTTP = httpAddr
	}
	s.Projector, s.Saga = s.Projectors[0], s.Sagas[0]

	cmdAddr := loopback.FreeAddr(t)
	s.Commands = startProc(t, s.Faults, "command-svc", commandSvc, cmdAddr,
		"-eventstore", s.ConnString, "-grpc-listen", cmdAddr, "-http-listen", "", timeout, pages, "-log-level", "warn",
		"-saga=false")

	cc, err := grpc.NewClient(cmdAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	s.client = orderlyv1.NewCommandServiceClient(cc)
	return s
}

// DefaultLeaseTTL is the processors' lease TTL unless Config says
// otherwise: short, so that a processor killed and started again takes its
// partitions back within a few seconds.
const DefaultLeaseTTL = 2 * time.Second

// CommandClient is a gRPC client of command-svc.
func (s *System) CommandClient() orderlyv1.CommandServiceClient { return s.client }

// Check waits (within settle) for the saga to be idle and the views to have
// caught up, then runs the invariant checker over the whole store, the
// views and acks; every broken invariant fails the test. It returns the
// report, for the counts.
func (s *System) Check(settle time.Duration, acks []invariant.Ack) invariant.Report {
	s.t.Helper()
	report, err := s.check(settle, acks)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := report.Err(); err != nil {
		s.t.Error(err)
	}
	for _, p := range slices.Concat([]*Proc{s.EventStore, s.Commands, s.ViewDB}, s.Sagas, s.Projectors) {
		if p != nil {
			p.CheckAlive()
		}
	}
	return report
}

// check settles and checks, as Check, and returns what it found.
func (s *System) check(settle time.Duration, acks []invariant.Ack) (invariant.Report, error) {
	src := s.Sources()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	if err := invariant.Settle(ctx, src); err != nil {
		return invariant.Report{}, err
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return invariant.Check(ctx, src, acks)
}

// Sources opens what the invariant checker reads, until the test ends: an
// official event store client, and the views.
func (s *System) Sources() invariant.Sources {
	s.t.Helper()
	cfg, err := esdb.ParseConnectionString(s.ConnString)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	es, err := esdb.NewClient(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = es.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vs, err := viewstore.Open(ctx, s.ViewStore)
	if err != nil {
		s.t.Fatalf("open the views: %v", err)
	}
	s.t.Cleanup(func() { _ = vs.Close() })
	return invariant.Sources{Store: es, Views: vs, Leases: vs}
}

// fmtCounts formats counts by name, sorted: "a=1 b=2".
func fmtCounts(n map[string]int) string {
	var parts []string
	for k, v := range n {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
