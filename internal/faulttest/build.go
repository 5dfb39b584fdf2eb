// Package faulttest runs Orderly as separate processes on loopback — the
// embedded event store, command-svc, the credit saga, the projector — and
// injects process faults into them: SIGKILL, SIGSTOP/SIGCONT, restarts. Its
// load generator records every acknowledged command, so a test can ask the
// invariant checker (package invariant) whether any was lost.
package faulttest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var binDir string

// Main runs a test package whose tests start binaries (Binary), and removes
// the binaries when they are done. Call it from TestMain.
func Main(m *testing.M) int {
	var err error
	if binDir, err = os.MkdirTemp("", "orderly-bin"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	return m.Run()
}

// root finds the module and opens its sources, once per test process. It
// runs inside the tests, not before them, because only files a running test
// opens become part of the test cache's key (see trackSources).
var root = sync.OnceValues(func() (string, error) {
	if binDir == "" {
		return "", fmt.Errorf("faulttest: the test package's TestMain must call faulttest.Main")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	dir := filepath.Dir(strings.TrimSpace(string(out)))
	return dir, trackSources(dir)
})

// builds builds each command once per test process, when a test first
// needs it: linking is most of a test's start on a busy machine.
var builds sync.Map // package directory → func() error

// Binary returns the path of a built command, by package directory (cmd/orderly,
// command-svc, projector, query-svc), building it on first use.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(binDir, filepath.Base(pkg))
	build, _ := builds.LoadOrStore(pkg, sync.OnceValue(func() error {
		dir, err := root()
		if err != nil {
			return err
		}
		cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}))
	if err := build.(func() error)(); err != nil {
		t.Fatal(err)
	}
	return out
}

// trackSources opens every Go source and go.mod/go.sum of the module. The
// binaries are built by a subprocess, which the test cache cannot see; files
// the test itself opens are part of the cache key, so a change to any source
// reruns these tests instead of replaying a stale pass.
func trackSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		return f.Close()
	})
}
