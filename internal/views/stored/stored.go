// Package stored is the shape view documents take inside a store: the JSON
// documents of the SQLite adapter and the BSON documents of the MongoDB
// adapter are the same records, so both adapters map documents in one place
// and a view looks alike wherever it is kept.
//
// Times are Unix nanoseconds, not dates: BSON dates hold milliseconds, and
// both the round trip and keyset pagination (orders at the same millisecond)
// need the store's full precision.
package stored

import (
	"strconv"
	"strings"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
)

// Money is domain.Money with storage tags.
type Money struct {
	Currency string `json:"currency_code" bson:"currency_code"`
	Minor    int64  `json:"minor_units" bson:"minor_units"`
}

// Line is an order line.
type Line struct {
	SKU       string `json:"sku" bson:"sku"`
	Quantity  int32  `json:"quantity" bson:"quantity"`
	UnitPrice Money  `json:"unit_price" bson:"unit_price"`
}

// Order is a stored OrderDoc. Status is the domain.OrderStatus number.
type Order struct {
	OrderID    string `json:"order_id" bson:"_id"`
	CustomerID string `json:"customer_id" bson:"customer_id"`
	Lines      []Line `json:"lines" bson:"lines"`
	Total      Money  `json:"total" bson:"total"`
	Status     int32  `json:"status" bson:"status"`
	Reason     string `json:"reason,omitempty" bson:"reason,omitempty"`
	CreatedNS  int64  `json:"created_ns" bson:"created_ns"`
	UpdatedNS  int64  `json:"updated_ns" bson:"updated_ns"`
	Revision   int64  `json:"revision" bson:"revision"`
	Position   int64  `json:"position" bson:"position"`
}

// Customer is a stored CustomerDoc (without order counts, which are derived).
type Customer struct {
	CustomerID         string `json:"customer_id" bson:"_id"`
	Name               string `json:"name" bson:"name"`
	Email              string `json:"email" bson:"email"`
	CreditLimit        Money  `json:"credit_limit" bson:"credit_limit"`
	CreditReserved     Money  `json:"credit_reserved" bson:"credit_reserved"`
	CreatedNS          int64  `json:"created_ns" bson:"created_ns"`
	UpdatedNS          int64  `json:"updated_ns" bson:"updated_ns"`
	Revision           int64  `json:"revision" bson:"revision"`
	Position           int64  `json:"position" bson:"position"`
	RegisteredPosition int64  `json:"registered_position" bson:"registered_position"`
}

// DeadLetter is a stored views.DeadLetter.
type DeadLetter struct {
	EventID    string `json:"event_id" bson:"_id"`
	Stream     string `json:"stream" bson:"stream"`
	Revision   int64  `json:"revision" bson:"revision"`
	Position   int64  `json:"position" bson:"position"`
	Type       string `json:"type" bson:"type"`
	RecordedNS int64  `json:"recorded_ns" bson:"recorded_ns"`
	Error      string `json:"error" bson:"error"`
	Data       []byte `json:"data" bson:"data"`
	Metadata   []byte `json:"metadata" bson:"metadata"`
}

// Nanos is t as Unix nanoseconds, 0 for the zero time.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Time is the UTC time of Unix nanoseconds ns; 0 is the zero time.
func Time(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func money(m domain.Money) Money { return Money{Currency: m.Currency, Minor: m.Minor} }

func (m Money) domain() domain.Money { return domain.Money{Currency: m.Currency, Minor: m.Minor} }

// FromOrder maps a document to its stored form.
func FromOrder(d views.OrderDoc) Order {
	lines := make([]Line, len(d.Lines))
	for i, l := range d.Lines {
		lines[i] = Line{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: money(l.UnitPrice)}
	}
	return Order{
		OrderID: d.OrderID, CustomerID: d.CustomerID, Lines: lines, Total: money(d.Total),
		Status: int32(d.Status), Reason: d.Reason,
		CreatedNS: Nanos(d.CreatedAt), UpdatedNS: Nanos(d.UpdatedAt),
		Revision: int64(d.Revision), Position: int64(d.Position),
	}
}

// Doc maps a stored order back to its document.
func (o Order) Doc() views.OrderDoc {
	lines := make([]domain.OrderLine, len(o.Lines))
	for i, l := range o.Lines {
		lines[i] = domain.OrderLine{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: l.UnitPrice.domain()}
	}
	return views.OrderDoc{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Lines: lines, Total: o.Total.domain(),
		Status: domain.OrderStatus(o.Status), Reason: o.Reason,
		CreatedAt: Time(o.CreatedNS), UpdatedAt: Time(o.UpdatedNS),
		Revision: uint64(o.Revision), Position: uint64(o.Position),
	}
}

// FromCustomer maps a document to its stored form; OrderCounts are dropped.
func FromCustomer(d views.CustomerDoc) Customer {
	return Customer{
		CustomerID: d.CustomerID, Name: d.Name, Email: d.Email,
		CreditLimit: money(d.CreditLimit), CreditReserved: money(d.CreditReserved),
		CreatedNS: Nanos(d.CreatedAt), UpdatedNS: Nanos(d.UpdatedAt),
		Revision: int64(d.Revision), Position: int64(d.Position), RegisteredPosition: int64(d.RegisteredPosition),
	}
}

// Doc maps a stored customer back to its document, with zero order counts.
func (c Customer) Doc() views.CustomerDoc {
	return views.CustomerDoc{
		CustomerID: c.CustomerID, Name: c.Name, Email: c.Email,
		CreditLimit: c.CreditLimit.domain(), CreditReserved: c.CreditReserved.domain(),
		CreatedAt: Time(c.CreatedNS), UpdatedAt: Time(c.UpdatedNS),
		Revision: uint64(c.Revision), Position: uint64(c.Position), RegisteredPosition: uint64(c.RegisteredPosition),
	}
}

// FromDeadLetter maps a dead letter to its stored form.
func FromDeadLetter(d views.DeadLetter) DeadLetter {
	return DeadLetter{
		EventID: d.EventID, Stream: d.Stream, Revision: int64(d.Revision), Position: int64(d.Position),
		Type: d.Type, RecordedNS: Nanos(d.RecordedAt), Error: d.Error, Data: d.Data, Metadata: d.Metadata,
	}
}

// Letter maps a stored dead letter back.
func (d DeadLetter) Letter() views.DeadLetter {
	return views.DeadLetter{
		EventID: d.EventID, Stream: d.Stream, Revision: uint64(d.Revision), Position: uint64(d.Position),
		Type: d.Type, RecordedAt: Time(d.RecordedNS), Error: d.Error, Data: d.Data, Metadata: d.Metadata,
	}
}

// Table names the collection or table that holds version v of view w; its
// dead letters sit beside it, in Table(w, v)+DeadLetterSuffix. Both adapters
// name them alike, so an operator finds a view the same way in either store.
func Table(w views.View, v views.Version) string {
	return string(w) + "_v" + strconv.FormatInt(int64(v), 10)
}

// DeadLetterSuffix ends the name of a version's dead-letter table.
const DeadLetterSuffix = "_dead_letters"

// ParseTable is the inverse of Table, for data and dead-letter tables alike:
// it tells which version of w a table belongs to; ok is false for tables
// that are not w's.
func ParseTable(w views.View, name string) (v views.Version, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSuffix(name, DeadLetterSuffix), string(w)+"_v")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != rest {
		return 0, false
	}
	return views.Version(n), true
}
