package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/cockroachdb/pebble/v2"
	"github.com/orderly/orderly/gen/event_store/client/operations"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Server is the embedded event store: storage plus the gRPC services the
// official client calls.
type Server struct {
	streams.UnimplementedStreamsServer

	cfg        Config
	log        *slog.Logger
	metrics    *metrics
	db         *pebble.DB
	blockCache *blockCache
	seq        *sequencer
	// durable is what plain reads see: only synced groups.
	durable   *durable
	broker    *broker
	admission *admission
	scavenges *scavenges
	grpc      *grpc.Server

	// testHook, when set by a test, runs before every handler (inside the
	// panic recovery), so a test can make a handler panic.
	testHook atomic.Pointer[func(method string)]
	// scavengeHook, when set by a test, runs before a scavenge deletes each
	// slice, so a test can stop or crash the store mid-scavenge.
	scavengeHook atomic.Pointer[func(context.Context)]

	closeOnce sync.Once
	closeErr  error
}

// streamWorkers is how many goroutines serve calls, reused from call to call.
const streamWorkers = 128

// maxConcurrentStreams bounds the calls one connection may have open, so a
// client cannot open unbounded concurrent appends (each holding a goroutine
// and its buffers). Services share one connection for their appends and
// subscriptions; this is far above what they use.
const maxConcurrentStreams = 4096

// shutdownGrace bounds how long Close waits for in-flight calls.
const shutdownGrace = 5 * time.Second

// Open opens (or creates) the store and prepares its gRPC server.
func Open(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register event store metrics: %w", err)
	}
	db, err := openPebble(cfg.Dir, cfg.fs, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if err := upgradeLayout(db, cfg.Logger); err != nil {
		_ = db.Close()
		return nil, err
	}
	cache := newBlockCache(db)
	if err := cfg.Registerer.Register(cache); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("register event store metrics: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: m, db: db, blockCache: cache, admission: newAdmission(cfg.MaxPendingAppendBytes, m.heldBytes)}
	s.seq, err = newSequencer(db, cfg.Logger, m, cfg.StreamCacheBytes, func(entries []*entry, head uint64) {
		s.durable.advance(db)
		if len(entries) > 0 { // a scavenge's group changes no head
			s.broker.publish(entries, head)
		}
	})
	if err != nil {
		cache.close()
		_ = db.Close()
		return nil, fmt.Errorf("recover event store state: %w", err)
	}
	s.broker = newBroker(s.seq.head, m.drops)
	s.durable = newDurable(db)
	go s.seq.run()
	s.scavenges = newScavenges(s)

	s.grpc = grpc.NewServer(append(s.serverOptions(),
		// The client pings every 10 s, idle or not; grpc-go's default policy
		// would answer with GOAWAY and drop idle subscriptions.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Leave room above MaxEventSize so an oversized event gets our
		// message, not gRPC's generic one.
		grpc.MaxRecvMsgSize(cfg.MaxEventSize+(1<<20)),
		grpc.UnknownServiceHandler(unimplemented),
		// Close must not close storage under a handler still reading it.
		grpc.WaitForHandlers(true),
		grpc.ForceServerCodecV2(newWireCodec()),
		// A handler on a fresh goroutine grows its stack on every call
		// (a twentieth of an append's CPU); workers keep theirs. Enough
		// for the appends a group commit gathers; more run as usual.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.ChainUnaryInterceptor(s.recoverUnary),
		grpc.ChainStreamInterceptor(s.recoverStream),
	)...)
	streams.RegisterStreamsServer(s.grpc, s)
	serverfeatures.RegisterServerFeaturesServer(s.grpc, features{})
	operations.RegisterOperationsServer(s.grpc, operationsServer{s: s})
	cfg.Logger.Info("event store opened", "dir", cfg.Dir, "head", s.seq.head)
	return s, nil
}

// serverOptions are the configured security and, when Traced, the stats
// handler that records a span for each call.
func (s *Server) serverOptions() []grpc.ServerOption {
	opts := s.securityOptions()
	if s.cfg.Traced {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	}
	return opts
}

// Serve accepts connections on lis until Close; it returns nil after Close.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("event store serving", "addr", lis.Addr().String())
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("event store serve: %w", err)
	}
	return nil
}

// Close ends subscriptions, lets in-flight calls finish (for a bounded
// time), stops the writer and closes storage. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.broker.close()
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(shutdownGrace):
			s.log.Warn("event store: calls still running after grace period; stopping them")
			s.grpc.Stop()
			<-stopped
		}
		s.scavenges.close() // before the sequencer: a stopped scavenge records that
		s.seq.stop()
		s.durable.close()
		s.blockCache.close()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close event store storage: %w", err)
		}
		s.log.Info("event store closed")
	})
	return s.closeErr
}

// BatchAppend is never called by the v4 client; say so plainly.
func (s *Server) BatchAppend(streams.Streams_BatchAppendServer) error {
	return status.Error(codes.Unimplemented, "BatchAppend is not supported by the embedded event store; use Append")
}

// unimplemented answers every service outside the subset (persistent
// subscriptions, projections, users, operations, gossip, ...).
func unimplemented(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	return status.Errorf(codes.Unimplemented, "%s is not supported by the embedded event store (it implements streams, server features and the scavenge calls of operations only)", method)
}
