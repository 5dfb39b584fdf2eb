package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bin holds the binaries TestMain builds, by package directory.
var bin = map[string]string{}

// binaries are the commands the tests run.
var binaries = []string{"cmd/orderly", "command-svc", "projector", "query-svc"}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "orderly-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, pkg := range binaries {
			out := filepath.Join(dir, filepath.Base(pkg))
			cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
			cmd.Dir = ".."
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
				return 1
			}
			bin[pkg] = out
		}
		return m.Run()
	}())
}
