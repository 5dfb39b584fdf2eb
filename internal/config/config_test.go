package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func newFlags() (*flag.FlagSet, *string, *int, *time.Duration) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:1", "address to listen on")
	size := fs.Int("max-event-size", 10, "max event size")
	wait := fs.Duration("wait", time.Second, "wait")
	return fs, listen, size, wait
}

func TestEnvName(t *testing.T) {
	if got := EnvName("ORDERLY_EVENTSTORE", "max-event-size"); got != "ORDERLY_EVENTSTORE_MAX_EVENT_SIZE" {
		t.Fatalf("EnvName = %q", got)
	}
	if got := EnvName("", "data"); got != "DATA" {
		t.Fatalf("EnvName without prefix = %q", got)
	}
}

func TestParsePrecedence(t *testing.T) {
	t.Setenv("X_LISTEN", "127.0.0.1:2")
	t.Setenv("X_MAX_EVENT_SIZE", "20")
	fs, listen, size, wait := newFlags()
	if err := Parse(fs, "X", []string{"-max-event-size", "30"}); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:2" {
		t.Errorf("listen = %q, want the environment's value", *listen)
	}
	if *size != 30 {
		t.Errorf("max-event-size = %d, want the command line's value", *size)
	}
	if *wait != time.Second {
		t.Errorf("wait = %v, want the default", *wait)
	}
	if u := fs.Lookup("listen").Usage; !strings.Contains(u, "env X_LISTEN") {
		t.Errorf("usage %q does not name the variable", u)
	}
}

func TestParseRejectsBadEnvironmentValue(t *testing.T) {
	fs, _, _, _ := newFlags()
	env := map[string]string{"X_WAIT": "soon"}
	err := parse(fs, "X", nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "X_WAIT") {
		t.Fatalf("err = %v, want an error naming X_WAIT", err)
	}
}

func TestParseEmptyEnvironmentValueIsSet(t *testing.T) {
	// An empty variable is a deliberate value (e.g. "-data ''" for memory), not "unset".
	fs, listen, _, _ := newFlags()
	err := parse(fs, "X", nil, func(k string) (string, bool) { return "", k == "X_LISTEN" })
	if err != nil {
		t.Fatal(err)
	}
	if *listen != "" {
		t.Fatalf("listen = %q, want empty", *listen)
	}
}
