package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/loopback"
)

// system is the all-in-one binary running as a subprocess.
type system struct {
	t        *testing.T
	args     []string
	http     string // base URL
	commands orderlyv1.CommandServiceClient
	queries  orderlyv1.QueryServiceClient
	esAddr   string

	cmd    *exec.Cmd
	output *syncBuffer
	exited chan error
}

// startSystem runs `orderly` on free ports with data in dataDir, plus extra
// flags, and waits until it serves.
func startSystem(t *testing.T, dataDir string, extra ...string) *system {
	t.Helper()
	s := &system{t: t, esAddr: loopback.FreeAddr(t)}
	httpAddr, cmdAddr, qryAddr := loopback.FreeAddr(t), loopback.FreeAddr(t), loopback.FreeAddr(t)
	s.args = append([]string{
		"-data", dataDir, "-eventstore-listen", s.esAddr, "-commands-listen", cmdAddr,
		"-queries-listen", qryAddr, "-http-listen", httpAddr, "-log-level", "warn",
	}, extra...)
	s.http = "http://" + httpAddr
	s.start()

	cc, err := grpc.NewClient(cmdAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	qc, err := grpc.NewClient(qryAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = qc.Close() })
	s.commands, s.queries = orderlyv1.NewCommandServiceClient(cc), orderlyv1.NewQueryServiceClient(qc)
	return s
}

func (s *system) start() {
	s.t.Helper()
	s.output = &syncBuffer{}
	s.cmd = exec.Command(binary(s.t, "cmd/orderly"), s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	s.t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if s.t.Failed() {
			s.t.Logf("orderly output:\n%s", s.output.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.exited:
			s.t.Fatalf("orderly exited at start: %v\n%s", err, s.output.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("orderly did not serve within a minute:\n%s", s.output.String())
		}
	}
}

// stop sends SIGTERM and requires a clean exit within the grace period.
func (s *system) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			s.t.Fatalf("orderly exited with %v after SIGTERM:\n%s", err, s.output.String())
		}
	case <-time.After(30 * time.Second):
		s.t.Fatal("orderly did not stop within 30s of SIGTERM")
	}
}

// restart stops the system and starts it again on the same data and ports.
func (s *system) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// rest sends a JSON request and decodes a 2xx answer into out; it returns the
// status and body.
func (s *system) rest(ctx context.Context, method, path, body string, out any) (int, string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, s.http+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// run runs another orderly subcommand against the system and returns its
// output; it must succeed.
func (s *system) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(binary(s.t, "cmd/orderly"), args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("orderly %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// eventually retries check until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
