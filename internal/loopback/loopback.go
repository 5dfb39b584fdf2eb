// Package loopback hands tests addresses on 127.0.0.1, so every server a
// test starts listens on loopback only, on a port nothing else holds.
package loopback

import (
	"net"
	"testing"
)

// Listen listens on a free loopback port until the caller closes it.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// FreeAddr returns a loopback address that was free a moment ago, for a
// process under test to listen on itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lis := Listen(t)
	defer lis.Close()
	return lis.Addr().String()
}
