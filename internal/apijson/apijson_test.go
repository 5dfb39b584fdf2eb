package apijson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apijson"
)

var reference = protojson.MarshalOptions{EmitUnpopulated: true}

// apiMessages is every message of the orderly.v1 package.
func apiMessages(t testing.TB) []protoreflect.MessageType {
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if mt.Descriptor().ParentFile().Package() == "orderly.v1" {
			out = append(out, mt)
		}
		return true
	})
	if len(out) < 20 {
		t.Fatalf("found %d orderly.v1 messages; is the generated package linked?", len(out))
	}
	return out
}

// TestEveryAPIMessageIsSupported keeps the fast path in use: a field type
// Marshal does not handle would silently send the API back to protojson.
func TestEveryAPIMessageIsSupported(t *testing.T) {
	for _, mt := range apiMessages(t) {
		if !apijson.Supports(mt.Descriptor()) {
			t.Errorf("%s is not supported", mt.Descriptor().FullName())
		}
	}
}

func TestSupportsRefusesSpecialJSONForms(t *testing.T) {
	for _, m := range []proto.Message{&structpb.Struct{}, &durationpb.Duration{}, &spb.Status{}} {
		if apijson.Supports(m.ProtoReflect().Descriptor()) {
			t.Errorf("%T reported supported", m)
		}
	}
}

// TestSameAsProtojson fills every API message at random, many times, with
// the awkward values (escapes, control characters, non-ASCII, extreme
// integers, unknown enum numbers, timestamps of every precision, unset
// messages and oneofs, empty lists) and compares with protojson.
func TestSameAsProtojson(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mt := range apiMessages(t) {
		for i := range 200 {
			m := mt.New()
			fill(rng, m, 0)
			want, err := reference.Marshal(m.Interface())
			if err != nil {
				t.Fatalf("protojson %s: %v", mt.Descriptor().FullName(), err)
			}
			got, err := apijson.Marshal(m.Interface())
			if err != nil {
				t.Fatalf("%s #%d: %v", mt.Descriptor().FullName(), i, err)
			}
			if !sameJSON(t, got, want) {
				t.Fatalf("%s #%d:\n got %s\nwant %s", mt.Descriptor().FullName(), i, got, want)
			}
		}
	}
}

// TestExactOutput pins the bytes for one order (protojson's own output
// varies its spacing on purpose, so the comparison above is by value).
func TestExactOutput(t *testing.T) {
	o := &orderlyv1.Order{
		OrderId: "o-1", CustomerId: "c-\"1\"",
		Lines:     []*orderlyv1.OrderLine{{Sku: "SKU-1", Quantity: 2, UnitPrice: &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: 1250}}},
		Status:    orderlyv1.OrderStatus_ORDER_STATUS_APPROVED,
		CreatedAt: timestamppb.New(time.Date(2026, 11, 23, 17, 0, 0, 120_000_000, time.UTC)),
		Revision:  3,
	}
	got, err := apijson.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"orderId":"o-1","customerId":"c-\"1\"","lines":[{"sku":"SKU-1","quantity":2,"unitPrice":{"currencyCode":"USD","minorUnits":"1250"}}],` +
		`"total":null,"status":"ORDER_STATUS_APPROVED","rejectionReason":"","createdAt":"2026-11-23T17:00:00.120Z","updatedAt":null,"revision":"3"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestErrorsLikeProtojson(t *testing.T) {
	for name, m := range map[string]proto.Message{
		"invalid UTF-8":     &orderlyv1.Order{OrderId: "bad\xffbyte"},
		"year 10000":        &orderlyv1.Order{CreatedAt: &timestamppb.Timestamp{Seconds: 253402300800}},
		"negative nanos":    &orderlyv1.Order{CreatedAt: &timestamppb.Timestamp{Nanos: -1}},
		"nanos of a second": &orderlyv1.Order{CreatedAt: &timestamppb.Timestamp{Nanos: 1_000_000_000}},
	} {
		if _, err := reference.Marshal(m); err == nil {
			t.Fatalf("%s: protojson accepted it; the case is wrong", name)
		}
		if got, err := apijson.Marshal(m); err == nil {
			t.Errorf("%s: no error, wrote %s", name, got)
		}
	}
}

func TestMarshalerLeavesTheRestToJSONPb(t *testing.T) {
	m := apijson.NewMarshaler()
	st := &spb.Status{Code: 5, Message: "order not found"}
	got, err := m.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := reference.Marshal(st)
	if !sameJSON(t, got, want) {
		t.Errorf("status: got %s, want %s", got, want)
	}
	got, err = m.Marshal(map[string]any{"result": 1})
	if err != nil || string(got) != `{"result":1}` {
		t.Errorf("non-proto value: %s, %v", got, err)
	}
}

func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("invalid JSON %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

var strs = []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\n\t\r\b\f", "é ✓ 😀", "\u2028\u2029<>&", "\uFFFD", "/slash/"}

func fill(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	oneofDone := map[protoreflect.FullName]bool{}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil {
			// Set at most one member, sometimes none.
			if oneofDone[o.FullName()] || rng.IntN(3) == 0 {
				continue
			}
			oneofDone[o.FullName()] = true
		}
		if rng.IntN(4) == 0 || (fd.Kind() == protoreflect.MessageKind && depth > 3) {
			continue // unset
		}
		if fd.IsList() {
			list := m.Mutable(fd).List()
			for range rng.IntN(4) {
				if fd.Kind() == protoreflect.MessageKind {
					v := list.NewElement()
					fill(rng, v.Message(), depth+1)
					list.Append(v)
				} else {
					list.Append(scalar(rng, fd))
				}
			}
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			fill(rng, m.Mutable(fd).Message(), depth+1)
			continue
		}
		m.Set(fd, scalar(rng, fd))
	}
}

func scalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	pick := func(vs ...int64) int64 { return vs[rng.IntN(len(vs))] }
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strs[rng.IntN(len(strs))] + strings.Repeat("x", rng.IntN(3)))
	case protoreflect.BytesKind:
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if fd.ContainingMessage().FullName() == "google.protobuf.Timestamp" { // nanos, every precision
			return protoreflect.ValueOfInt32(int32(pick(0, 1, 120_000_000, 123_000, 999_999_999, rng.Int64N(1e9))))
		}
		return protoreflect.ValueOfInt32(int32(pick(0, 1, -1, math.MaxInt32, math.MinInt32, rng.Int64N(1e6))))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(pick(0, 1, math.MaxUint32, rng.Int64N(1e6))))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if fd.ContainingMessage().FullName() == "google.protobuf.Timestamp" {
			return protoreflect.ValueOfInt64(pick(0, -1, 1_700_000_000, -62135596800, 253402300799, rng.Int64N(4e9)))
		}
		return protoreflect.ValueOfInt64(pick(0, 1, -1, math.MaxInt64, math.MinInt64, rng.Int64()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(pick(0, 1, -1, math.MaxInt64, rng.Int64())))
	case protoreflect.DoubleKind:
		doubles := []float64{0, 1, -2.5, 0.1, 1e21, 9.99e20, 1e-6, 1e-7, -3e-300, 1e300, math.MaxFloat64, math.SmallestNonzeroFloat64,
			math.NaN(), math.Inf(1), math.Inf(-1), rng.Float64() * 1e6, math.Copysign(0, -1)}
		return protoreflect.ValueOfFloat64(doubles[rng.IntN(len(doubles))])
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if rng.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(99) // unknown to this build
		}
		return protoreflect.ValueOfEnum(values.Get(rng.IntN(values.Len())).Number())
	}
	panic(fmt.Sprintf("no filler for %v", fd.Kind()))
}

// BenchmarkMarshal writes a page of 20 orders, as ListOrders answers, with
// protojson and with Marshal.
//
//	go test -run '^$' -bench Marshal ./internal/apijson
func BenchmarkMarshal(b *testing.B) {
	page := &orderlyv1.ListOrdersResponse{NextPageToken: strings.Repeat("t", 40)}
	for i := range 20 {
		page.Orders = append(page.Orders, &orderlyv1.Order{
			OrderId: fmt.Sprintf("15b663b8-a49e-5b3d-a6b1-%012d", i), CustomerId: "90b63842-09e2-5f8f-a036-0a57088bf635",
			Lines: []*orderlyv1.OrderLine{
				{Sku: "SKU-1", Quantity: 2, UnitPrice: &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: 1250}},
				{Sku: "SKU-2", Quantity: 1, UnitPrice: &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: 999}},
			},
			Total:     &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: 3499},
			Status:    orderlyv1.OrderStatus_ORDER_STATUS_APPROVED,
			CreatedAt: timestamppb.New(time.Date(2026, 11, 23, 17, 0, 0, 120_000_000, time.UTC)),
			UpdatedAt: timestamppb.New(time.Date(2026, 11, 23, 17, 0, 1, 0, time.UTC)),
			Revision:  uint64(i),
		})
	}
	for name, marshal := range map[string]func(proto.Message) ([]byte, error){
		"protojson": reference.Marshal,
		"apijson":   apijson.Marshal,
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := marshal(page); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDoublesAsProtojsonWritesThem pins doubles byte for byte, which the
// comparison by value above cannot: 1e21 and 1000000000000000000000 are
// one value, but clients see the text.
func TestDoublesAsProtojsonWritesThem(t *testing.T) {
	for _, f := range []float64{0, 1, -2.5, 0.1, 1e20, 1e21, 9.99e20, 1e-6, 1e-7, 1.5e-10, -3e-300, 1e300, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1), 123456.789} {
		m := &orderlyv1.Processor{LagSeconds: f}
		want, err := reference.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, want); err != nil {
			t.Fatal(err)
		}
		got, err := apijson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != compact.String() {
			t.Errorf("%v:\n got %s\nwant %s", f, got, compact.String())
		}
	}
}
