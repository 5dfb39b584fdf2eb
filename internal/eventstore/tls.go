package eventstore

import (
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// errAccessWithoutTLS: the official clients send credentials only over
// TLS, so access control without it would refuse every call.
var errAccessWithoutTLS = errors.New("eventstore config: access control needs TLS (the official clients send credentials only over TLS)")

// securityOptions serve TLS when the configuration has it, and enforce
// access control (see Access). The official client negotiates HTTP/2 by
// ALPN and refuses a server that does not: credentials.NewTLS offers "h2"
// whatever the configuration says.
func (s *Server) securityOptions() []grpc.ServerOption {
	if s.cfg.TLS == nil {
		return nil
	}
	return append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.cfg.TLS))}, s.accessOptions()...)
}
