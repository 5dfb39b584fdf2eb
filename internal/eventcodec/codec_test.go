package eventcodec_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
)

const (
	custID  = "11111111-1111-5111-8111-111111111111"
	orderID = "22222222-2222-5222-8222-222222222222"
)

func usd(minor int64) domain.Money { return domain.Money{Currency: "USD", Minor: minor} }

// every event type, one instance each, with every field set.
var samples = []domain.Event{
	domain.CustomerRegistered{CustomerID: custID, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)},
	domain.CreditLimitChanged{CustomerID: custID, CreditLimit: usd(2000), PreviousLimit: usd(1000)},
	domain.CreditReserved{CustomerID: custID, OrderID: orderID, Amount: usd(300)},
	domain.CreditLimitExceeded{CustomerID: custID, OrderID: orderID, Amount: usd(3000), Available: usd(700)},
	domain.CreditReleased{CustomerID: custID, OrderID: orderID, Amount: usd(300)},
	domain.OrderPlaced{OrderID: orderID, CustomerID: custID, Lines: []domain.OrderLine{{SKU: "A", Quantity: 3, UnitPrice: usd(100)}}, Total: usd(300)},
	domain.OrderApproved{OrderID: orderID, CustomerID: custID},
	domain.OrderRejected{OrderID: orderID, CustomerID: custID, Reason: "credit limit exceeded"},
	domain.OrderCancelled{OrderID: orderID, CustomerID: custID, Reason: "changed my mind"},
}

func TestRoundTripEveryEvent(t *testing.T) {
	reg := eventcodec.Default()
	if got := len(reg.Types()); got != len(samples) {
		t.Fatalf("registry has %d types, samples cover %d", got, len(samples))
	}
	for _, ev := range samples {
		typ, schema, payload, err := reg.Encode(ev)
		if err != nil {
			t.Fatalf("encode %T: %v", ev, err)
		}
		if typ != ev.EventType() || !strings.HasPrefix(typ, "orderly.") {
			t.Errorf("type = %q", typ)
		}
		back, err := reg.Decode(typ, schema, payload)
		if err != nil {
			t.Fatalf("decode %s: %v", typ, err)
		}
		if !reflect.DeepEqual(back, ev) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", typ, back, ev)
		}
	}
}

// Upcast hands a stored v1 payload (bare US cents) on at the current schema,
// with its currency; TestGoldenEvents checks what it decodes to.
func TestUpcastStoredOrderPlacedV1(t *testing.T) {
	stored, err := os.ReadFile("testdata/golden/orderly.OrderPlaced.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	payload, schema, err := eventcodec.Default().Upcast(domain.TypeOrderPlaced, 1, stored)
	if err != nil || schema != 2 || !strings.Contains(string(payload), `"currency_code":"USD"`) {
		t.Fatalf("Upcast = %s, v%d, %v", payload, schema, err)
	}
}

func TestDecodeRefusals(t *testing.T) {
	reg := eventcodec.Default()
	tests := []struct {
		name, typ string
		schema    int
		payload   string
		want      string
		newer     bool // only a newer schema is ErrNewerSchema: readers wait for it
	}{
		{"unknown type", "orderly.Nope", 1, `{}`, "unregistered", false},
		{"schema from the future", domain.TypeOrderPlaced, 3, `{}`, "schema v3 unknown", true},
		{"schema zero", domain.TypeOrderApproved, 0, `{}`, "schema v0 unknown", false},
		{"bad json", domain.TypeOrderApproved, 1, `{"order_id":`, "decode orderly.OrderApproved", false},
		{"bad v1 json", domain.TypeOrderPlaced, 1, `[]`, "upcast orderly.OrderPlaced v1 to v2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := reg.Decode(tt.typ, tt.schema, []byte(tt.payload))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %v, %v; want error containing %q", ev, err, tt.want)
			}
			if errors.Is(err, eventcodec.ErrNewerSchema) != tt.newer {
				t.Fatalf("Decode error %v: errors.Is(ErrNewerSchema) = %v; want %v", err, !tt.newer, tt.newer)
			}
		})
	}
}

func TestRegisterWithoutUpcasterPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering v2 without a v1 upcaster did not panic")
		}
	}()
	eventcodec.NewRegistry().Register(domain.OrderApproved{}, 2, nil)
}

func TestMetadata(t *testing.T) {
	m := eventcodec.Metadata{Schema: 2, CorrelationID: "c", CausationID: "k", CommandID: "cmd", Actor: "alice"}
	b, err := eventcodec.EncodeMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := eventcodec.DecodeMetadata(b)
	if err != nil || back != m {
		t.Fatalf("metadata round trip = %+v, %v", back, err)
	}
	// Events written by other tools may carry no metadata at all.
	none, err := eventcodec.DecodeMetadata(nil)
	if err != nil || none.Schema != 1 {
		t.Fatalf("empty metadata = %+v, %v", none, err)
	}
	if _, err := eventcodec.DecodeMetadata([]byte("{")); err == nil {
		t.Fatal("broken metadata accepted")
	}
}
