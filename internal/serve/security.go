package serve

import (
	"context"
	"crypto/tls"
	"flag"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/orderly/orderly/internal/auth"
	"github.com/orderly/orderly/internal/tlsconf"
)

// Security is how a process's servers protect themselves: TLS on their
// listeners (nil Certs: plain text), and a guard on their calls
// (authentication, authorization, rate limits; nil: none).
type Security struct {
	Certs *tlsconf.Certs
	Guard *auth.Guard
}

// grpcOptions are the server options that put sec into effect.
func (sec Security) grpcOptions() []grpc.ServerOption {
	if sec.Certs == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(serverCreds{credentials.NewTLS(sec.Certs.Config("h2"))})}
}

// interceptors are the guard's, nil without one.
func (sec Security) interceptors() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	if sec.Guard == nil {
		return nil, nil
	}
	return sec.Guard.Unary, sec.Guard.Stream
}

// httpTLS is the TLS configuration of an HTTP listener, nil without TLS.
func (sec Security) httpTLS() *tls.Config {
	if sec.Certs == nil {
		return nil
	}
	return sec.Certs.Config("h2", "http/1.1")
}

// serverCreds is TLS for every connection but the REST gateway's in-memory
// one (see NewGateway), which never leaves the process: nobody can listen
// in on it, and its client has no certificate to check the server's with.
// Only connections accepted from an inProcessListener skip the handshake.
type serverCreds struct {
	credentials.TransportCredentials
}

func (c serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if _, ok := conn.(inProcessConn); ok {
		return insecure.NewCredentials().ServerHandshake(conn)
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c serverCreds) Clone() credentials.TransportCredentials {
	return serverCreds{c.TransportCredentials.Clone()}
}

// inProcessListener marks the connections of the gateway's in-memory
// listener, so serverCreds can tell them from the network's.
type inProcessListener struct{ *bufconn.Listener }

type inProcessConn struct{ net.Conn }

func (l inProcessListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return inProcessConn{c}, nil
}

// SecurityFlags are the flags of Security, the same in every command.
type SecurityFlags struct {
	TLS  tlsconf.Flags
	Auth auth.Flags
}

// Register declares the flags on fs.
func (f *SecurityFlags) Register(fs *flag.FlagSet) {
	f.TLS.Register(fs)
	f.Auth.Register(fs)
}

// Build loads what the flags name for servers listening on addrs ("" for a
// listener turned off): it refuses plain text off loopback without
// -insecure (see tlsconf.Flags.CheckListen). A JWKS is refreshed until ctx
// ends.
func (f *SecurityFlags) Build(ctx context.Context, log *slog.Logger, addrs ...string) (Security, error) {
	if err := f.TLS.CheckListen(log, addrs...); err != nil {
		return Security{}, err
	}
	certs, err := f.TLS.Server(log)
	if err != nil {
		return Security{}, err
	}
	guard, err := f.Auth.New(ctx, log)
	if err != nil {
		return Security{}, err
	}
	return Security{Certs: certs, Guard: guard}, nil
}
