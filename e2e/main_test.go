package e2e

import (
	"os"
	"testing"

	"github.com/orderly/orderly/internal/faulttest"
)

func TestMain(m *testing.M) { os.Exit(faulttest.Main(m)) }

// binary returns the path of a built command, by package directory.
func binary(t testing.TB, pkg string) string {
	t.Helper()
	return faulttest.Binary(t, pkg)
}
