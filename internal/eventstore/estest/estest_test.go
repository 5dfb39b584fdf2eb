package estest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/eventstore/estest"
)

// childEnv makes this test binary run TestStartChild for real.
const childEnv = "ORDERLY_ESTEST_CHILD"

// TestStartChild is the child of TestServerSwitch: it asks Start for a store
// and says which it got.
func TestStartChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestServerSwitch")
	}
	conn := estest.Start(t, estest.Shareable())
	t.Logf("GOT %s", conn)
}

// TestServerSwitch: with ServerEnv set, Start hands out that server and only
// that one; one it cannot reach fails the test, saying which setting is
// wrong, instead of falling back to an embedded store.
func TestServerSwitch(t *testing.T) {
	if estest.Real() {
		t.Skip("runs its own children")
	}
	run := func(server string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStartChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1", estest.ServerEnv+"="+server)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// A live server (an embedded one standing in for a real one) is used as is.
	live := estest.Start(t)
	out, err := run(live)
	if err != nil || !strings.Contains(out, "GOT "+live) {
		t.Fatalf("with %s=%s the child said (%v):\n%s", estest.ServerEnv, live, err, out)
	}

	for _, bad := range []string{"esdb://127.0.0.1:1?tls=false", "http://not-a-store"} {
		out, err := run(bad)
		if err == nil || strings.Contains(out, "GOT ") {
			t.Fatalf("with %s=%s the child ran (%v):\n%s", estest.ServerEnv, bad, err, out)
		}
		if want := estest.ServerEnv + "=" + `"` + bad + `"`; !strings.Contains(out, want) {
			t.Fatalf("with an unreachable server the failure does not name %s:\n%s", want, out)
		}
	}
}
