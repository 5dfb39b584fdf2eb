package saga_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// childStoreEnv names the store a saga child process (TestSagaProcess)
// works on.
const childStoreEnv = "ORDERLY_SAGA_TEST_STORE"

// childLeasesEnv names the SQLite file of the leases a saga child process
// shares with the test.
const childLeasesEnv = "ORDERLY_SAGA_TEST_LEASES"

// killNineOpts checkpoint often, so that kills land between checkpoints and
// in the middle of saving one.
var killNineOpts = saga.Options{Workers: 8, CheckpointEvery: 3, CheckpointInterval: 20 * time.Millisecond,
	Lease: lease.Config{TTL: testLeaseTTL}}

// TestKillNine kills the saga process with SIGKILL at random moments while
// clients place and cancel orders, restarting it each time; a last saga
// then converges with no credit leaked, none reserved or released twice.
func TestKillNine(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{}, estest.OnDisk())
	customers := make([]string, 6)
	for i := range customers {
		customers[i] = env.RegisterCustomer(t, int64(4_000+i*1_000))
	}

	// Clients place and cancel orders until the kills are over.
	var (
		mu     sync.Mutex
		orders []placed
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				o := place(t, env, customers[(c+i)%len(customers)], int64(200+(c*37+i*211)%1_500))
				if i%4 == 1 {
					cancel(t, env, &o)
				}
				mu.Lock()
				orders = append(orders, o)
				mu.Unlock()
			}
		})
	}
	for range 5 {
		killSagaProcess(t, env)
	}
	close(stop)
	wg.Wait()
	startSaga(t, env, killNineOpts)
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	decidedOnce(t, env, orders)
}

// killSagaProcess starts a saga process on env and kills it with SIGKILL
// at a random moment after it has saved a checkpoint (the clients keep
// giving it work).
func killSagaProcess(t *testing.T, env *commandtest.Env) {
	t.Helper()
	from := savedCheckpoint(t, env)
	child := exec.Command(os.Args[0], "-test.run=^TestSagaProcess$")
	child.Env = append(os.Environ(), childStoreEnv+"="+env.ConnString, childLeasesEnv+"="+leaseStoreOf(t, env).path)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = child.Process.Kill()
		_ = child.Wait() // killed: its error says so
	}()
	// A test binary takes a while to start; the saga runs once it says so.
	lines := bufio.NewScanner(out)
	for lines.Scan() && lines.Text() != childRunning {
	}
	if lines.Err() != nil {
		t.Fatalf("saga process: %v", lines.Err())
	}
	eventually(t, converge, func() (bool, string) {
		return savedCheckpoint(t, env) > from, fmt.Sprintf("the saga process has not moved its checkpoint from %d", from)
	})
	time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
	t.Logf("kill at checkpoint %d of %d", savedCheckpoint(t, env), env.Head(t))
}

// childRunning is what a saga process prints once its saga is running.
const childRunning = "saga process running"

// TestSagaProcess is the saga process TestKillNine kills; it runs only
// as that test's child.
func TestSagaProcess(t *testing.T) {
	conn := os.Getenv(childStoreEnv)
	if conn == "" {
		t.Skip("runs as TestKillNine's child process")
	}
	env := commandtest.StartOn(t, conn, command.Options{})
	leases, err := sqlite.Open(context.Background(), os.Getenv(childLeasesEnv))
	if err != nil {
		t.Fatal(err)
	}
	opts := killNineOpts
	opts.Leases = leases
	s, err := saga.New(env.Conn, env.Service, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(childRunning)
	_ = s.Run(context.Background()) // until killed
}

// decidedOnce checks every order's credit was decided at most once, and
// released at most once.
func decidedOnce(t *testing.T, env *commandtest.Env, orders []placed) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range orders {
		if seen[o.customer] {
			continue
		}
		seen[o.customer] = true
		count := map[string]int{}
		for _, r := range env.History(t, eventlog.CustomerStream(o.customer)) {
			switch e := r.Event.(type) {
			case domain.CreditReserved:
				count["decided "+e.OrderID]++
			case domain.CreditLimitExceeded:
				count["decided "+e.OrderID]++
			case domain.CreditReleased:
				count["released "+e.OrderID]++
			}
		}
		for what, n := range count {
			if n > 1 {
				t.Errorf("customer %s: %s %d times", o.customer, what, n)
			}
		}
	}
}
