package eventstore

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// transportOptions serve TLS when the configuration has it. The official
// client negotiates HTTP/2 by ALPN and refuses a server that does not, so
// "h2" is offered whatever the caller's configuration says.
func (c Config) transportOptions() []grpc.ServerOption {
	if c.TLS == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c.TLS))}
}
