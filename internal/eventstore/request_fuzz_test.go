package eventstore_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/orderly/orderly/internal/eventstore/estest"
)

// rawCodec sends and receives messages as the bytes they are on the wire,
// so a test can send what no client would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// streamsMethod is one method of the Streams service, called with raw
// requests; it returns the responses received before the call ended, and
// how it ended.
type streamsMethod struct {
	name string
	// decodes reports whether the request bytes decode as this method's
	// requests, which gRPC refuses with Internal otherwise.
	decodes func(reqs [][]byte) bool
	call    func(ctx context.Context, cc *grpc.ClientConn, reqs [][]byte) error
}

const streamsService = "/event_store.client.streams.Streams/"

func unary(method string) func(context.Context, *grpc.ClientConn, [][]byte) error {
	return func(ctx context.Context, cc *grpc.ClientConn, reqs [][]byte) error {
		var resp []byte
		return cc.Invoke(ctx, streamsService+method, &reqs[0], &resp, grpc.ForceCodec(rawCodec{}))
	}
}

func decodesAs[M any, P interface {
	*M
	proto.Message
}](n int) func([][]byte) bool {
	return func(reqs [][]byte) bool {
		for _, b := range reqs[:n] {
			if proto.Unmarshal(b, P(new(M))) != nil {
				return false
			}
		}
		return true
	}
}

// maxReadResponses is how many responses of a read the fuzzer takes before
// hanging up: a subscription never ends by itself.
const maxReadResponses = 64

var streamsMethods = []streamsMethod{
	{"Read", decodesAs[streams.ReadReq](1), func(ctx context.Context, cc *grpc.ClientConn, reqs [][]byte) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, streamsService+"Read", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		if err := s.SendMsg(&reqs[0]); err != nil {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		for range maxReadResponses {
			var b []byte
			if err := s.RecvMsg(&b); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			var resp streams.ReadResp
			if err := proto.Unmarshal(b, &resp); err != nil {
				return status.Errorf(codes.DataLoss, "undecodable response %x: %v", b, err)
			}
			if resp.GetCaughtUp() != nil {
				return nil // live from here on: the subscription works
			}
		}
		return nil
	}},
	{"Append", decodesAs[streams.AppendReq](2), func(ctx context.Context, cc *grpc.ClientConn, reqs [][]byte) error {
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, streamsService+"Append", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		for i := range reqs {
			if err := s.SendMsg(&reqs[i]); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		var b []byte
		if err := s.RecvMsg(&b); err != nil {
			return err
		}
		if err := proto.Unmarshal(b, &streams.AppendResp{}); err != nil {
			return status.Errorf(codes.DataLoss, "undecodable response %x: %v", b, err)
		}
		return nil
	}},
	{"Delete", decodesAs[streams.DeleteReq](1), unary("Delete")},
	{"Tombstone", decodesAs[streams.TombstoneReq](1), unary("Tombstone")},
}

// FuzzStreamsRequest sends arbitrary bytes as the requests of every Streams
// method of a real embedded store holding a few events. Every call ends
// (no hang) with success or a status a client can act on: InvalidArgument,
// NotFound, FailedPrecondition, Unimplemented (system streams); a refusal
// carries a message. Internal only for bytes that are no such request,
// which gRPC itself refuses so before any handler runs.
func FuzzStreamsRequest(f *testing.F) {
	connString := estest.Start(f)
	client := estest.Client(f, connString)
	for _, stream := range []string{"order-1", "customer-1"} {
		if _, err := client.AppendToStream(context.Background(), stream, esdb.AppendToStreamOptions{},
			esdb.EventData{EventType: "orderly.Seeded", ContentType: esdb.ContentTypeJson, Data: []byte(`{"a":1}`)},
			esdb.EventData{EventType: "orderly.Seeded", ContentType: esdb.ContentTypeJson, Data: []byte(`{"a":2}`)},
		); err != nil {
			f.Fatal(err)
		}
	}
	u, err := url.Parse(connString)
	if err != nil {
		f.Fatal(err)
	}
	cc, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = cc.Close() })

	for _, s := range fuzzSeeds(f) {
		f.Add(s.method, s.first, s.second)
	}

	f.Fuzz(func(t *testing.T, which uint8, first, second []byte) {
		m := streamsMethods[int(which)%len(streamsMethods)]
		reqs := [][]byte{first}
		if m.name == "Append" {
			reqs = append(reqs, second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := m.call(ctx, cc, reqs)
		st, _ := status.FromError(err)
		switch st.Code() {
		case codes.OK:
			return
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.Unimplemented:
			if strings.TrimSpace(st.Message()) == "" {
				t.Fatalf("%s: %v without a message", m.name, st.Code())
			}
			return
		case codes.Internal:
			if !m.decodes(reqs) {
				return // gRPC's own refusal: the handler never ran
			}
		}
		t.Fatalf("%s %x: %v", m.name, reqs, err)
	})
}

type fuzzSeed struct {
	method        uint8
	first, second []byte
}

func fuzzSeeds(f *testing.F) []fuzzSeed {
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	empty := &shared.Empty{}
	stream := func(name string) *shared.StreamIdentifier { return &shared.StreamIdentifier{StreamName: []byte(name)} }
	read := func(o *streams.ReadReq_Options) []byte { return marshal(&streams.ReadReq{Options: o}) }
	structured := &streams.ReadReq_Options_UUIDOption{Content: &streams.ReadReq_Options_UUIDOption_Structured{Structured: empty}}
	streamFrom := func(name string, rev uint64) *streams.ReadReq_Options_Stream {
		return &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
			StreamIdentifier: stream(name), RevisionOption: &streams.ReadReq_Options_StreamOptions_Revision{Revision: rev}}}
	}
	allFrom := &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{AllOption: &streams.ReadReq_Options_AllOptions_Start{Start: empty}}}
	regexFilter := &streams.ReadReq_Options_Filter{Filter: &streams.ReadReq_Options_FilterOptions{
		Filter: &streams.ReadReq_Options_FilterOptions_EventType{EventType: &streams.ReadReq_Options_FilterOptions_Expression{Regex: `^orderly\.(a|b)*$`}},
		Window: &streams.ReadReq_Options_FilterOptions_Max{Max: 10}, CheckpointIntervalMultiplier: 1,
	}}
	prefixFilter := &streams.ReadReq_Options_Filter{Filter: &streams.ReadReq_Options_FilterOptions{
		Filter: &streams.ReadReq_Options_FilterOptions_StreamIdentifier{StreamIdentifier: &streams.ReadReq_Options_FilterOptions_Expression{Prefix: []string{"order-", ""}}},
		Window: &streams.ReadReq_Options_FilterOptions_Count{Count: empty},
	}}
	count := &streams.ReadReq_Options_Count{Count: 10}
	subscription := &streams.ReadReq_Options_Subscription{Subscription: &streams.ReadReq_Options_SubscriptionOptions{}}
	noFilter := &streams.ReadReq_Options_NoFilter{NoFilter: empty}

	options := func(name string, rev *streams.AppendReq_Options_Revision) []byte {
		o := &streams.AppendReq_Options{StreamIdentifier: stream(name)}
		if rev != nil {
			o.ExpectedStreamRevision = rev
		} else {
			o.ExpectedStreamRevision = &streams.AppendReq_Options_Any{Any: empty}
		}
		return marshal(&streams.AppendReq{Content: &streams.AppendReq_Options_{Options: o}})
	}
	proposed := marshal(&streams.AppendReq{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
		Id:       &shared.UUID{Value: &shared.UUID_String_{String_: "7f1e8a4c-0b6d-4c1e-9a55-3d2b1f0e9c87"}},
		Metadata: map[string]string{"type": "orderly.Seeded", "content-type": "application/json"},
		Data:     []byte(`{"a":3}`),
	}}})
	return []fuzzSeed{
		{0, read(&streams.ReadReq_Options{StreamOption: streamFrom("order-1", 0), CountOption: count, FilterOption: noFilter, UuidOption: structured}), nil},
		{0, read(&streams.ReadReq_Options{StreamOption: streamFrom("order-1", 1), ReadDirection: streams.ReadReq_Options_Backwards, CountOption: count, FilterOption: noFilter}), nil},
		{0, read(&streams.ReadReq_Options{StreamOption: streamFrom("$all", 0), CountOption: count}), nil},
		{0, read(&streams.ReadReq_Options{StreamOption: allFrom, CountOption: count, FilterOption: regexFilter, UuidOption: structured}), nil},
		{0, read(&streams.ReadReq_Options{StreamOption: allFrom, CountOption: subscription, FilterOption: prefixFilter}), nil},
		{0, read(&streams.ReadReq_Options{StreamOption: streamFrom("customer-1", 0), CountOption: subscription, FilterOption: noFilter}), nil},
		{0, read(&streams.ReadReq_Options{StreamOption: streamFrom("order-1", 0), CountOption: count, FilterOption: regexFilter}), nil},
		{0, nil, nil},
		{1, options("order-2", nil), proposed},
		{1, options("order-1", &streams.AppendReq_Options_Revision{Revision: 7}), proposed},
		{1, proposed, options("", nil)},
		{2, marshal(&streams.DeleteReq{Options: &streams.DeleteReq_Options{StreamIdentifier: stream("customer-1"),
			ExpectedStreamRevision: &streams.DeleteReq_Options_Revision{Revision: 5}}}), nil},
		{2, marshal(&streams.DeleteReq{Options: &streams.DeleteReq_Options{StreamIdentifier: stream("$$order-1"),
			ExpectedStreamRevision: &streams.DeleteReq_Options_Any{Any: empty}}}), nil},
		{3, marshal(&streams.TombstoneReq{Options: &streams.TombstoneReq_Options{StreamIdentifier: stream("order-3"),
			ExpectedStreamRevision: &streams.TombstoneReq_Options_NoStream{NoStream: empty}}}), nil},
		{3, []byte{0x0a, 0x02, 0x0a, 0x00}, nil},
		{2, []byte{0xff}, nil},
	}
}

// TestControlCharactersInStreamNames: the refusals that carry the stream's
// name in a trailer reach the official client as what they are, even when
// the name holds control characters (found by FuzzStreamsRequest: Internal,
// "invalid header field value").
func TestControlCharactersInStreamNames(t *testing.T) {
	client := estest.Client(t, estest.Start(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const name = "order-\n1\x7f"
	if _, err := client.AppendToStream(ctx, name, esdb.AppendToStreamOptions{},
		esdb.EventData{EventType: "orderly.Seeded", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// The client's delete reports this one as an unknown error code, for any
	// name: the status it wraps is what matters.
	_, err := client.DeleteStream(ctx, name, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(5)})
	if err == nil || !strings.Contains(err.Error(), "code = FailedPrecondition") || !strings.Contains(err.Error(), "wrong expected version") {
		t.Fatalf("delete at a wrong revision: %v, want FailedPrecondition, wrong expected version", err)
	}
	if _, err := client.TombstoneStream(ctx, name, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}}); err != nil {
		t.Fatal(err)
	}
	_, err = client.DeleteStream(ctx, name, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}})
	if e := (*esdb.Error)(nil); !errors.As(err, &e) || e.Code() != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("delete of a tombstoned stream: %v, want stream deleted", err)
	}
}
