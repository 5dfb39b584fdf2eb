package e2e

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

// binaries are the commands the tests run, by package directory.
var binaries = []string{"cmd/orderly", "command-svc", "projector", "query-svc"}

var binDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		var err error
		if binDir, err = os.MkdirTemp("", "orderly-e2e-bin"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(binDir)
		return m.Run()
	}())
}

// build compiles every binary once per test process. It runs inside the
// tests, not before them, because only files a running test opens become
// part of the test cache's key (see trackSources).
var build = sync.OnceValue(func() error {
	if err := trackSources(); err != nil {
		return err
	}
	for _, pkg := range binaries {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, filepath.Base(pkg)), "./"+pkg)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
})

// binary returns the path of a built command, by package directory.
func binary(t testing.TB, pkg string) string {
	t.Helper()
	if err := build(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(binDir, filepath.Base(pkg))
}

// trackSources opens every Go source and go.mod/go.sum of the module. The
// binaries are built by a subprocess, which the test cache cannot see; files
// the test itself opens are part of the cache key, so a change to any source
// reruns these tests instead of replaying a stale pass.
func trackSources() error {
	return filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
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
