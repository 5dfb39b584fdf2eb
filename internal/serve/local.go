package serve

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// GRPCServer is a gRPC server that also remembers the unary handlers
// registered on it, so the REST gateway of the same process can call them
// directly (see localConn).
type GRPCServer struct {
	*grpc.Server
	unary   grpc.UnaryServerInterceptor
	methods map[string]localMethod // by full method name, "/pkg.Service/Method"
	obs     *observer
	health  *health.Server
}

type localMethod struct {
	impl    any
	handler grpc.MethodHandler
}

// RegisterService registers impl on the server and records its unary methods.
func (s *GRPCServer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.Server.RegisterService(desc, impl)
	for _, m := range desc.Methods {
		s.methods["/"+desc.ServiceName+"/"+m.MethodName] = localMethod{impl: impl, handler: m.Handler}
	}
}

// localConn is the gateway's connection to a server of its own process.
// Unary calls run the registered handler under the server's interceptor, as
// a call off the wire would, but without the encoding, HTTP/2 framing and
// goroutine hops of a transport. Streams, which need a transport's flow
// control, go through remote, a real in-memory gRPC connection to the same
// server.
type localConn struct {
	srv    *GRPCServer
	remote grpc.ClientConnInterface
}

func (c localConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.srv.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return status.Errorf(codes.Internal, "in-process call %s: messages are not protobuf", method)
	}
	// What the gateway sends becomes what the handler receives; nothing of
	// it must leak into calls the handler makes itself (to the event store).
	md, _ := metadata.FromOutgoingContext(ctx)
	st := &localStream{method: method}
	ctx = metadata.NewOutgoingContext(metadata.NewIncomingContext(ctx, md), nil)
	ctx = grpc.NewContextWithServerTransportStream(ctx, st)

	// The handler may keep or change its request, and may answer with a
	// shared message. The gateway builds each request for one call and
	// never reads it after, so the request is handed over as it is (a deep
	// copy costs as much as decoding it again, and a hostile request is
	// mostly its decoded size); the answer is copied.
	decode := func(req any) error {
		handOver(req.(proto.Message), in)
		return nil
	}
	resp, err := m.handler(m.impl, ctx, decode, c.srv.unary)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = st.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = st.trailer
		}
	}
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			// The server's rule for errors that carry no status.
			return status.FromContextError(err).Err()
		}
		return err
	}
	respMsg, ok := resp.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s: handler answered %T", method, resp)
	}
	proto.Merge(out, respMsg)
	return nil
}

// handOver sets dst's fields to src's, sharing their values; both are of
// one type.
func handOver(dst, src proto.Message) {
	d := dst.ProtoReflect()
	s := src.ProtoReflect()
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	d.SetUnknown(s.GetUnknown())
}

func (c localConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.remote.NewStream(ctx, desc, method, opts...)
}

// localStream collects the header and trailer a handler sets with
// grpc.SetHeader / grpc.SetTrailer, for the gateway to forward.
type localStream struct {
	method          string
	header, trailer metadata.MD
}

func (s *localStream) Method() string { return s.method }

func (s *localStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *localStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *localStream) SetTrailer(md metadata.MD) error {
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

var _ grpc.ServerTransportStream = (*localStream)(nil)
