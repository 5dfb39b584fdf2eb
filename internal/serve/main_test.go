package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/serve"
)

// childStuck makes the test binary a command whose shutdown never ends.
const childStuck = "ORDERLY_SERVE_TEST_STUCK"

func TestMain(m *testing.M) {
	if os.Getenv(childStuck) != "" {
		serve.Main("stuck", func(ctx context.Context, _ []string) error {
			fmt.Println("ready")
			<-ctx.Done()
			fmt.Println("stopping")
			time.Sleep(time.Hour) // a shutdown that hangs
			return nil
		})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSecondSignalExits: the first SIGTERM starts the shutdown, the second
// ends the process at once even though the shutdown hangs.
func TestSecondSignalExits(t *testing.T) {
	// A child that does not exit is killed, and fails the test, at last.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childStuck+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			_ = cmd.Process.Kill()
			t.Fatalf("child said %q (%v), want %q; stderr: %s", lines.Text(), lines.Err(), want, stderr.String())
		}
	}
	expect("ready")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("stopping")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "again") {
		t.Errorf("after the second signal: %v, stderr %q; want exit status 1 saying so", err, stderr.String())
	}
}
