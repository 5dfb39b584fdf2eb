package faulttest_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, for the lock another connection holds

	"github.com/orderly/orderly/internal/faulttest"
	"github.com/orderly/orderly/internal/views/viewstore"
)

var long = flag.Bool("faults.long", os.Getenv("ORDERLY_FAULTS_LONG") == "1", "run the long fault scenarios (also ORDERLY_FAULTS_LONG=1)")

func TestMain(m *testing.M) { os.Exit(faulttest.Main(m)) }

// rounds is how many faults of a kind a scenario injects: a few in the
// short run, many in the long one.
func rounds(short int) int {
	if *long {
		return 10 * short
	}
	return short
}

// timeout is the services' store deadline in these tests: pauses and
// outages last longer.
const timeout = 2 * time.Second

// scenario runs a system under load, lets inject break it, stops the load
// and checks every invariant.
func scenario(t *testing.T, cfg faulttest.Config, load faulttest.LoadConfig, inject func(s *faulttest.System, l *faulttest.Load)) {
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = timeout
	}
	s := faulttest.Start(t, cfg)
	l := faulttest.StartLoad(t, s.CommandClient(), load)
	l.WaitProgress(20, time.Minute)
	inject(s, l)
	l.WaitProgress(20, time.Minute)
	acks := l.Stop()
	r := s.Check(time.Minute, acks)
	t.Logf("faults: %d (%s); events checked: %d (%d orders, %d customers); acknowledged commands: %d, problems: %d; answers: %s",
		s.Faults.Total(), s.Faults, r.Events, r.Orders, r.Customers, r.Acks, len(r.Problems), l.Summary())
}

// killRestarts kills p n times at random moments, leaving it dead for a
// random while each time.
func killRestarts(p *faulttest.Proc, n int) {
	for range n {
		jitter(600 * time.Millisecond)
		p.KillRestart(rand.N(300 * time.Millisecond))
	}
}

// jitter is a random pause up to d, so faults land anywhere in the work.
func jitter(d time.Duration) { time.Sleep(rand.N(d)) }

// TestEventStoreKilled kills the event store with SIGKILL during a command
// load and restarts it on the same data: clients get UNAVAILABLE
// meanwhile and recover, and every command acknowledged is in the store.
func TestEventStoreKilled(t *testing.T) {
	t.Parallel()
	scenario(t, faulttest.Config{}, faulttest.LoadConfig{}, func(s *faulttest.System, l *faulttest.Load) {
		for range rounds(2) {
			jitter(500 * time.Millisecond)
			s.EventStore.Kill()
			time.Sleep(time.Second) // long enough for the clients to notice
			s.EventStore.Restart()
			l.WaitProgress(10, time.Minute)
		}
		if l.Answers("Unavailable") == 0 {
			t.Errorf("no client was answered UNAVAILABLE while the event store was down; answers: %s", l.Summary())
		}
	})
}

// TestProjectorKilledAndPaused kills the projector repeatedly, and stops
// it (SIGSTOP) for longer than its store deadline, during the load.
func TestProjectorKilledAndPaused(t *testing.T) {
	t.Parallel()
	scenario(t, faulttest.Config{}, faulttest.LoadConfig{}, func(s *faulttest.System, l *faulttest.Load) {
		killRestarts(s.Projector, rounds(3))
		for range rounds(1) {
			jitter(500 * time.Millisecond)
			s.Projector.Pause()
			time.Sleep(2*timeout + time.Second)
			s.Projector.Resume()
		}
	})
}

// TestSagaKilled kills the process running the credit saga repeatedly
// while orders come in, so kills land in the middle of reservations, and
// of snapshot page writes; each restart loads its customers lazily, from
// the keys of their pages.
func TestSagaKilled(t *testing.T) {
	t.Parallel()
	scenario(t, faulttest.Config{}, faulttest.LoadConfig{}, func(s *faulttest.System, l *faulttest.Load) {
		// Pages first: a restarted saga folds a customer without any from
		// its events and keeps it cached, so had the kills come before
		// the customers had pages, no later load would be from keys. A CI
		// run on a starved machine most likely failed so: its restarted
		// saga loaded nothing from keys nor pages in a minute.
		// reach waits until the saga's counter name reaches want, or within
		// passes, and returns its value then.
		reach := func(name string, want float64, within time.Duration) float64 {
			for end := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
				if n, _ := s.Saga.Metric(name, ""); n >= want || time.Now().After(end) {
					return n
				}
			}
		}
		if n := reach("orderly_command_snapshot_pages_written_total", 10, 2*time.Minute); n < 10 {
			t.Fatalf("the saga wrote %v snapshot pages in two minutes, want 10 before the kills", n)
		}
		killRestarts(s.Saga, rounds(4))
		// The restarted saga takes over once the killed one's leases
		// expire, and loads its customers as their events come.
		if reach("orderly_command_snapshot_pages_deferred_total", 1, time.Minute) == 0 {
			// What it did instead, to tell a saga that loaded nothing
			// (starved, or never took over) from one that loaded in full.
			var got []string
			for _, m := range []string{"orderly_command_cache_misses_total", "orderly_command_snapshot_pages_loaded_total", "orderly_command_snapshot_pages_written_total"} {
				n, err := s.Saga.Metric(m, "")
				got = append(got, fmt.Sprintf("%s %v (%v)", m, n, err))
			}
			t.Errorf("the restarted saga loaded no customer from page keys within a minute: %s", strings.Join(got, ", "))
		}
	})
}

// TestViewStoreUnavailable makes the view store unavailable for longer
// than the projector's store deadline: the projector waits, then catches
// up without skipping anything.
func TestViewStoreUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("sqlite locked", func(t *testing.T) {
		t.Parallel()
		scenario(t, faulttest.Config{}, faulttest.LoadConfig{}, func(s *faulttest.System, l *faulttest.Load) {
			for range rounds(1) {
				lockSQLite(t, filepath.Join(s.ViewStore.DataDir, viewstore.SQLiteFile), 3*timeout)
				s.Faults.Count("sqlite locked")
			}
		})
	})
	t.Run("ferretdb hung and killed", func(t *testing.T) {
		t.Parallel()
		// FerretDB runs as a process of its own, so it can be killed,
		// and it is no slower than the services (the test process runs
		// under the race detector). The load is lighter: FerretDB scans
		// a collection on every lookup, so its writes slow down as the
		// views grow; the long run's load, ten times as long, is lighter
		// still, or the projector could not keep up with it.
		load := faulttest.LoadConfig{Clients: 2, Pause: 100 * time.Millisecond}
		if *long {
			load = faulttest.LoadConfig{Clients: 1, Pause: 400 * time.Millisecond}
		}
		cfg := faulttest.Config{Views: viewstore.Mongo}
		scenario(t, cfg, load, func(s *faulttest.System, l *faulttest.Load) {
			for range rounds(1) {
				jitter(500 * time.Millisecond)
				// Hung: connections stay open, nothing is answered, every
				// call runs into its deadline. It is killed before it
				// resumes: FerretDB would then run the commands the
				// projector abandoned, and its conditional update is not
				// atomic (it reads, filters, then writes by _id), so an
				// abandoned older write can overwrite a newer one, which
				// MongoDB's per-document update never does.
				s.ViewDB.Pause()
				time.Sleep(timeout + time.Second)
				// Dead: connections refused.
				s.ViewDB.KillRestart(timeout + time.Second)
				l.WaitProgress(10, time.Minute)
			}
		})
	})
}

// lockSQLite holds an exclusive lock on the database at path, from
// another connection, for d.
func lockSQLite(t *testing.T, path string, d time.Duration) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The projector holds the write lock only while it writes a batch.
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 30000"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatalf("lock the views: %v", err)
	}
	time.Sleep(d)
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
}
