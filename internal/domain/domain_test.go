package domain_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/domain"
)

const (
	custID  = "11111111-1111-5111-8111-111111111111"
	orderID = "22222222-2222-5222-8222-222222222222"
	order2  = "33333333-3333-5333-8333-333333333333"
)

func usd(minor int64) domain.Money { return domain.Money{Currency: "USD", Minor: minor} }

// customerWith rebuilds a customer from events, as the write side does.
func customerWith(events ...domain.Event) *domain.Customer {
	c := domain.NewCustomer(custID)
	for _, e := range events {
		c.Apply(e)
	}
	return c
}

func orderWith(events ...domain.Event) *domain.Order {
	o := domain.NewOrder(orderID)
	for _, e := range events {
		o.Apply(e)
	}
	return o
}

var (
	registered = domain.CustomerRegistered{CustomerID: custID, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(10_000)}
	placed     = domain.OrderPlaced{OrderID: orderID, CustomerID: custID, Lines: []domain.OrderLine{{SKU: "A-1", Quantity: 2, UnitPrice: usd(1_500)}}, Total: usd(3_000)}
	reserved   = domain.CreditReserved{CustomerID: custID, OrderID: orderID, Amount: usd(3_000)}
)

// wantRefusal fails unless err is a domain refusal of the given kind and reason.
func wantRefusal(t *testing.T, evs []domain.Event, err error, kind domain.Kind, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s refusal %s, got events %v", kind, reason, evs)
	}
	if evs != nil {
		t.Errorf("refusal returned events %v", evs)
	}
	if got := domain.KindOf(err); got != kind {
		t.Errorf("kind = %v, want %v (err %v)", got, kind, err)
	}
	if got := domain.ReasonOf(err); got != reason {
		t.Errorf("reason = %q, want %q (err %v)", got, reason, err)
	}
}

func wantEvents(t *testing.T, got []domain.Event, err error, want ...domain.Event) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected refusal: %v", err)
	}
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %#v\nwant     %#v", got, want)
	}
}

func TestRegisterCustomer(t *testing.T) {
	cmd := domain.RegisterCustomer{CustomerID: custID, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(10_000)}
	evs, err := domain.NewCustomer(custID).Register(cmd)
	wantEvents(t, evs, err, registered)

	evs, err = customerWith(registered).Register(cmd)
	wantRefusal(t, evs, err, domain.KindAlreadyExists, domain.ReasonCustomerExists)
}

func TestChangeCreditLimit(t *testing.T) {
	tests := []struct {
		name     string
		history  []domain.Event
		limit    domain.Money
		want     []domain.Event
		kind     domain.Kind
		reason   string
		notFound bool
	}{
		{name: "raise", history: []domain.Event{registered}, limit: usd(20_000),
			want: []domain.Event{domain.CreditLimitChanged{CustomerID: custID, CreditLimit: usd(20_000), PreviousLimit: usd(10_000)}}},
		{name: "lower to exactly reserved", history: []domain.Event{registered, reserved}, limit: usd(3_000),
			want: []domain.Event{domain.CreditLimitChanged{CustomerID: custID, CreditLimit: usd(3_000), PreviousLimit: usd(10_000)}}},
		{name: "same limit is a no-op", history: []domain.Event{registered}, limit: usd(10_000)},
		{name: "below reserved", history: []domain.Event{registered, reserved}, limit: usd(2_999),
			kind: domain.KindRejected, reason: domain.ReasonLimitBelowReserved},
		{name: "other currency", history: []domain.Event{registered}, limit: domain.Money{Currency: "EUR", Minor: 1},
			kind: domain.KindRejected, reason: domain.ReasonCurrencyMismatch},
		{name: "unknown customer", limit: usd(1), kind: domain.KindNotFound, reason: domain.ReasonCustomerNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := customerWith(tt.history...).ChangeCreditLimit(domain.ChangeCreditLimit{CustomerID: custID, CreditLimit: tt.limit})
			if tt.kind != 0 {
				wantRefusal(t, evs, err, tt.kind, tt.reason)
				return
			}
			wantEvents(t, evs, err, tt.want...)
		})
	}
}

func TestReserveCredit(t *testing.T) {
	reserve := func(c *domain.Customer, order string, amount int64) ([]domain.Event, error) {
		return c.ReserveCredit(domain.ReserveCredit{CustomerID: custID, OrderID: order, Amount: usd(amount)})
	}
	c := customerWith(registered)
	evs, err := reserve(c, orderID, 3_000)
	wantEvents(t, evs, err, reserved)

	c.Apply(evs[0])
	if c.Reserved != usd(3_000) || c.Available() != usd(7_000) || !c.HasReservation(orderID) {
		t.Fatalf("after reserve: reserved %v available %v", c.Reserved, c.Available())
	}

	// Exactly the rest fits; one unit more does not.
	evs, err = reserve(c, order2, 7_001)
	wantEvents(t, evs, err, domain.CreditLimitExceeded{CustomerID: custID, OrderID: order2, Amount: usd(7_001), Available: usd(7_000)})
	evs, err = reserve(customerWith(registered, reserved), order2, 7_000)
	wantEvents(t, evs, err, domain.CreditReserved{CustomerID: custID, OrderID: order2, Amount: usd(7_000)})

	// An order's credit is decided once, whatever the first outcome.
	evs, err = reserve(c, orderID, 1)
	wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonCreditAlreadyDecided)
	exceeded := customerWith(registered, domain.CreditLimitExceeded{CustomerID: custID, OrderID: order2, Amount: usd(99_999)})
	evs, err = reserve(exceeded, order2, 1)
	wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonCreditAlreadyDecided)
	released := customerWith(registered, reserved, domain.CreditReleased{CustomerID: custID, OrderID: orderID, Amount: usd(3_000)})
	evs, err = reserve(released, orderID, 3_000)
	wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonCreditAlreadyDecided)

	evs, err = customerWith(registered).ReserveCredit(domain.ReserveCredit{CustomerID: custID, OrderID: orderID, Amount: domain.Money{Currency: "EUR", Minor: 1}})
	wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonCurrencyMismatch)

	evs, err = reserve(domain.NewCustomer(custID), orderID, 1)
	wantRefusal(t, evs, err, domain.KindNotFound, domain.ReasonCustomerNotFound)
}

func TestReleaseCredit(t *testing.T) {
	release := domain.ReleaseCredit{CustomerID: custID, OrderID: orderID}
	c := customerWith(registered, reserved)
	evs, err := c.ReleaseCredit(release)
	wantEvents(t, evs, err, domain.CreditReleased{CustomerID: custID, OrderID: orderID, Amount: usd(3_000)})
	c.Apply(evs[0])
	if c.Reserved != usd(0) || c.HasReservation(orderID) {
		t.Fatalf("after release: reserved %v", c.Reserved)
	}
	// Compensation is repeatable: nothing left to release is not an error.
	evs, err = c.ReleaseCredit(release)
	wantEvents(t, evs, err)
	evs, err = customerWith(registered).ReleaseCredit(release)
	wantEvents(t, evs, err)

	evs, err = domain.NewCustomer(custID).ReleaseCredit(release)
	wantRefusal(t, evs, err, domain.KindNotFound, domain.ReasonCustomerNotFound)
}

func TestPlaceOrder(t *testing.T) {
	cmd := domain.PlaceOrder{OrderID: orderID, CustomerID: custID, Lines: placed.Lines}
	evs, err := domain.NewOrder(orderID).Place(cmd, customerWith(registered))
	wantEvents(t, evs, err, placed)

	evs, err = orderWith(placed).Place(cmd, customerWith(registered))
	wantRefusal(t, evs, err, domain.KindAlreadyExists, domain.ReasonOrderExists)

	evs, err = domain.NewOrder(orderID).Place(cmd, domain.NewCustomer(custID))
	wantRefusal(t, evs, err, domain.KindNotFound, domain.ReasonCustomerNotFound)

	eur := cmd
	eur.Lines = []domain.OrderLine{{SKU: "A-1", Quantity: 1, UnitPrice: domain.Money{Currency: "EUR", Minor: 5}}}
	evs, err = domain.NewOrder(orderID).Place(eur, customerWith(registered))
	wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonCurrencyMismatch)
}

func TestOrderTotal(t *testing.T) {
	total, err := domain.OrderTotal([]domain.OrderLine{
		{SKU: "a", Quantity: 3, UnitPrice: usd(199)},
		{SKU: "b", Quantity: 1, UnitPrice: usd(1)},
	})
	if err != nil || total != usd(598) {
		t.Fatalf("total = %v, %v; want 598 USD", total, err)
	}
	_, err = domain.OrderTotal([]domain.OrderLine{{SKU: "a", Quantity: 2, UnitPrice: usd(math.MaxInt64/2 + 1)}})
	if domain.ReasonOf(err) != domain.ReasonAmountOverflow {
		t.Fatalf("overflow: err = %v", err)
	}
	// The shape limits keep the largest valid order far from overflow.
	var lines []domain.OrderLine
	for range domain.MaxLines {
		lines = append(lines, domain.OrderLine{SKU: "x", Quantity: domain.MaxQuantity, UnitPrice: usd(domain.MaxUnitPrice)})
	}
	if _, err := domain.OrderTotal(lines); err != nil {
		t.Fatalf("largest valid order: %v", err)
	}
}

func TestOrderTransitions(t *testing.T) {
	approved := domain.OrderApproved{OrderID: orderID, CustomerID: custID}
	rejectedEv := domain.OrderRejected{OrderID: orderID, CustomerID: custID, Reason: "credit limit exceeded"}
	cancelled := domain.OrderCancelled{OrderID: orderID, CustomerID: custID, Reason: "changed my mind"}
	cancel := domain.CancelOrder{OrderID: orderID, Reason: "changed my mind"}

	t.Run("approve", func(t *testing.T) {
		evs, err := orderWith(placed).Approve()
		wantEvents(t, evs, err, approved)
		evs, err = orderWith(placed, approved).Approve()
		wantEvents(t, evs, err)
		evs, err = orderWith(placed, cancelled).Approve()
		wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonOrderNotPending)
		evs, err = orderWith(placed, rejectedEv).Approve()
		wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonOrderNotPending)
		evs, err = orderWith().Approve()
		wantRefusal(t, evs, err, domain.KindNotFound, domain.ReasonOrderNotFound)
	})
	t.Run("reject", func(t *testing.T) {
		evs, err := orderWith(placed).Reject(rejectedEv.Reason)
		wantEvents(t, evs, err, rejectedEv)
		evs, err = orderWith(placed, rejectedEv).Reject("again")
		wantEvents(t, evs, err)
		evs, err = orderWith(placed, approved).Reject("late")
		wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonOrderNotPending)
		evs, err = orderWith(placed, cancelled).Reject("late")
		wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonOrderNotPending)
		evs, err = orderWith().Reject("x")
		wantRefusal(t, evs, err, domain.KindNotFound, domain.ReasonOrderNotFound)
	})
	t.Run("cancel", func(t *testing.T) {
		evs, err := orderWith(placed).Cancel(cancel)
		wantEvents(t, evs, err, cancelled)
		evs, err = orderWith(placed, approved).Cancel(cancel)
		wantEvents(t, evs, err, cancelled)
		evs, err = orderWith(placed, rejectedEv).Cancel(cancel)
		wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonOrderRejected)
		evs, err = orderWith(placed, cancelled).Cancel(cancel)
		wantRefusal(t, evs, err, domain.KindRejected, domain.ReasonOrderAlreadyCancelled)
		evs, err = orderWith().Cancel(cancel)
		wantRefusal(t, evs, err, domain.KindNotFound, domain.ReasonOrderNotFound)
	})
	t.Run("fold", func(t *testing.T) {
		o := orderWith(placed, approved, cancelled)
		if o.Status != domain.StatusCancelled || o.Reason != "changed my mind" || o.Total != usd(3_000) || o.CustomerID != custID {
			t.Fatalf("folded order = %+v", o)
		}
	})
}

// violationsOf returns field → description of an InvalidArgument refusal.
func violationsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) || de.Kind != domain.KindInvalid {
		t.Fatalf("want an invalid-argument refusal, got %v", err)
	}
	m := map[string]string{}
	for _, v := range de.Violations {
		m[v.Field] = v.Description
	}
	return m
}

// TestValidation checks that each malformed field is named, with why. Each
// case lists every field it must name (and no other).
func TestValidation(t *testing.T) {
	okReg := domain.RegisterCustomer{CustomerID: custID, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)}
	okLine := domain.OrderLine{SKU: "SKU-1", Quantity: 1, UnitPrice: usd(100)}
	okPlace := domain.PlaceOrder{OrderID: orderID, CustomerID: custID, Lines: []domain.OrderLine{okLine}}
	// Every line is malformed too: too many lines are refused without
	// checking a single one.
	manyLines := make([]domain.OrderLine, domain.MaxLines+1)

	tests := []struct {
		name string
		cmd  interface{ Validate() error }
		want map[string]string // field → substring of its description
	}{
		{"register ok", okReg, nil},
		{"register empty", domain.RegisterCustomer{}, map[string]string{
			"customer_id": "required", "name": "required", "email": "required",
			"credit_limit.currency_code": "ISO 4217",
		}},
		{"register bad id", with(okReg, func(c *domain.RegisterCustomer) { c.CustomerID = "42" }), map[string]string{"customer_id": "UUID"}},
		{"register upper-case id", with(okReg, func(c *domain.RegisterCustomer) { c.CustomerID = "ABCDEF01-2345-5678-9ABC-DEF012345678" }), map[string]string{"customer_id": "UUID"}},
		{"register blank name", with(okReg, func(c *domain.RegisterCustomer) { c.Name = "   " }), map[string]string{"name": "required"}},
		{"register long name", with(okReg, func(c *domain.RegisterCustomer) { c.Name = strings.Repeat("é", domain.MaxNameLen+1) }), map[string]string{"name": "at most 200"}},
		{"register name with newline", with(okReg, func(c *domain.RegisterCustomer) { c.Name = "a\nb" }), map[string]string{"name": "control"}},
		{"register name not utf8", with(okReg, func(c *domain.RegisterCustomer) { c.Name = "\xff" }), map[string]string{"name": "UTF-8"}},
		{"register email no at", with(okReg, func(c *domain.RegisterCustomer) { c.Email = "ada.example.com" }), map[string]string{"email": "plain email"}},
		{"register email with name", with(okReg, func(c *domain.RegisterCustomer) { c.Email = "Ada <ada@example.com>" }), map[string]string{"email": "plain email"}},
		{"register email no dot", with(okReg, func(c *domain.RegisterCustomer) { c.Email = "ada@localhost" }), map[string]string{"email": "plain email"}},
		{"register email too long", with(okReg, func(c *domain.RegisterCustomer) { c.Email = strings.Repeat("a", 250) + "@b.co" }), map[string]string{"email": "at most 254"}},
		{"register negative limit", with(okReg, func(c *domain.RegisterCustomer) { c.CreditLimit.Minor = -1 }), map[string]string{"credit_limit.minor_units": "negative"}},
		{"register huge limit", with(okReg, func(c *domain.RegisterCustomer) { c.CreditLimit.Minor = domain.MaxCreditLimit + 1 }), map[string]string{"credit_limit.minor_units": "at most"}},
		{"register lower-case currency", with(okReg, func(c *domain.RegisterCustomer) { c.CreditLimit.Currency = "usd" }), map[string]string{"credit_limit.currency_code": "ISO 4217"}},

		{"change limit ok", domain.ChangeCreditLimit{CustomerID: custID, CreditLimit: usd(0)}, nil},
		{"change limit empty", domain.ChangeCreditLimit{}, map[string]string{"customer_id": "required", "credit_limit.currency_code": "ISO 4217"}},

		{"place ok", okPlace, nil},
		{"place no lines", with(okPlace, func(c *domain.PlaceOrder) { c.Lines = nil }), map[string]string{"lines": "at least one"}},
		{"place too many lines", with(okPlace, func(c *domain.PlaceOrder) { c.Lines = manyLines }), map[string]string{"lines": "at most 100"}},
		{"place bad customer", with(okPlace, func(c *domain.PlaceOrder) { c.CustomerID = "x" }), map[string]string{"customer_id": "UUID"}},
		{"place bad lines", with(okPlace, func(c *domain.PlaceOrder) {
			c.Lines = []domain.OrderLine{
				okLine,
				{SKU: "", Quantity: 0, UnitPrice: domain.Money{Currency: "EUR", Minor: -5}},
				{SKU: "has space", Quantity: domain.MaxQuantity + 1, UnitPrice: domain.Money{Currency: "US", Minor: domain.MaxUnitPrice + 1}},
			}
		}), map[string]string{
			"lines[1].sku": "1-64", "lines[1].quantity": "between 1 and 10000, got 0",
			"lines[1].unit_price.minor_units": "negative", "lines[1].unit_price.currency_code": "must be USD",
			"lines[2].sku": "1-64", "lines[2].quantity": "got 10001",
			"lines[2].unit_price.minor_units": "at most", "lines[2].unit_price.currency_code": "ISO 4217",
		}},
		{"place long sku", with(okPlace, func(c *domain.PlaceOrder) { c.Lines[0].SKU = strings.Repeat("s", domain.MaxSKULen+1) }), map[string]string{"lines[0].sku": "1-64"}},

		{"cancel ok", domain.CancelOrder{OrderID: orderID}, nil},
		{"cancel bad", domain.CancelOrder{OrderID: "", Reason: strings.Repeat("r", domain.MaxReasonLen+1)}, map[string]string{
			"order_id": "required", "reason": "at most 500",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid command refused: %v", err)
				}
				return
			}
			got := violationsOf(t, err)
			for field, desc := range tt.want {
				if !strings.Contains(got[field], desc) {
					t.Errorf("field %s: description %q, want it to contain %q", field, got[field], desc)
				}
			}
			for field := range got {
				if _, ok := tt.want[field]; !ok {
					t.Errorf("unexpected violation %s: %s", field, got[field])
				}
			}
		})
	}
}

// TestViolationsCapped: a command with hundreds of malformed fields lists
// the first MaxViolations, then one more naming where the listing stops and
// how many were left out.
func TestViolationsCapped(t *testing.T) {
	lines := make([]domain.OrderLine, domain.MaxLines) // 3 violations each
	err := domain.PlaceOrder{OrderID: orderID, CustomerID: custID, Lines: lines}.Validate()
	var de *domain.Error
	if !errors.As(err, &de) || de.Kind != domain.KindInvalid {
		t.Fatalf("want an invalid-argument refusal, got %v", err)
	}
	if len(de.Violations) != domain.MaxViolations+1 {
		t.Fatalf("%d violations listed, want %d", len(de.Violations), domain.MaxViolations+1)
	}
	if v := de.Violations[0]; v.Field != "lines[0].sku" {
		t.Errorf("first violation %+v, want lines[0].sku", v)
	}
	more := de.Violations[domain.MaxViolations]
	wantMore := 3*domain.MaxLines - domain.MaxViolations
	if more.Field != "lines[6].unit_price.currency_code" || !strings.Contains(more.Description, fmt.Sprintf("and %d more", wantMore)) {
		t.Errorf("last violation %+v, want the 21st field and %d more", more, wantMore)
	}
}

// TestPrependCapped: an adapter's own violations go first and the listing
// stays within the bound, still counting every violation left out. Found by
// FuzzCommandRequest: a bad command_id made 22 entries.
func TestPrependCapped(t *testing.T) {
	lines := make([]domain.OrderLine, domain.MaxLines) // 3 violations each
	var de *domain.Error
	if err := (domain.PlaceOrder{OrderID: orderID, CustomerID: custID, Lines: lines}.Validate()); !errors.As(err, &de) {
		t.Fatalf("want a refusal, got %v", err)
	}
	de.Prepend(domain.FieldViolation{Field: "command_id", Description: "bad"}, domain.FieldViolation{Field: "x-correlation-id", Description: "bad"})
	if len(de.Violations) != domain.MaxViolations+1 {
		t.Fatalf("%d violations listed, want %d", len(de.Violations), domain.MaxViolations+1)
	}
	if de.Violations[0].Field != "command_id" || de.Violations[1].Field != "x-correlation-id" || de.Violations[2].Field != "lines[0].sku" {
		t.Errorf("first violations %+v, want command_id, x-correlation-id, lines[0].sku", de.Violations[:3])
	}
	more := de.Violations[domain.MaxViolations]
	wantMore := 3*domain.MaxLines - domain.MaxViolations + 2
	if more.Field != "lines[6].sku" || !strings.Contains(more.Description, fmt.Sprintf("and %d more", wantMore)) || de.Omitted != wantMore {
		t.Errorf("last violation %+v (%d omitted), want lines[6].sku and %d more", more, de.Omitted, wantMore)
	}

	few := &domain.Error{Kind: domain.KindInvalid, Violations: []domain.FieldViolation{{Field: "name", Description: "bad"}}}
	few.Prepend(domain.FieldViolation{Field: "command_id", Description: "bad"})
	if len(few.Violations) != 2 || few.Violations[0].Field != "command_id" || few.Omitted != 0 {
		t.Errorf("short listing: %+v, %d omitted", few.Violations, few.Omitted)
	}
}

// with returns a modified copy of a command; slices are copied so cases stay
// independent.
func with[T any](c T, mod func(*T)) T {
	if p, ok := any(&c).(*domain.PlaceOrder); ok {
		p.Lines = append([]domain.OrderLine(nil), p.Lines...)
	}
	mod(&c)
	return c
}

// Deciding validates first, so a malformed command never reaches the rules.
func TestDecisionsValidate(t *testing.T) {
	_, err := domain.NewCustomer(custID).Register(domain.RegisterCustomer{CustomerID: custID})
	violationsOf(t, err)
	_, err = customerWith(registered).ChangeCreditLimit(domain.ChangeCreditLimit{CustomerID: custID})
	violationsOf(t, err)
	_, err = domain.NewOrder(orderID).Place(domain.PlaceOrder{OrderID: orderID, CustomerID: custID}, customerWith(registered))
	violationsOf(t, err)
	_, err = orderWith(placed).Cancel(domain.CancelOrder{OrderID: "nope"})
	violationsOf(t, err)
}

func TestMoney(t *testing.T) {
	if _, err := usd(1).Add(domain.Money{Currency: "EUR", Minor: 1}); domain.ReasonOf(err) != domain.ReasonCurrencyMismatch {
		t.Errorf("USD+EUR: %v", err)
	}
	if _, err := usd(math.MaxInt64).Add(usd(1)); domain.ReasonOf(err) != domain.ReasonAmountOverflow {
		t.Errorf("max+1: %v", err)
	}
	if _, err := usd(math.MinInt64).Sub(usd(1)); domain.ReasonOf(err) != domain.ReasonAmountOverflow {
		t.Errorf("min-1: %v", err)
	}
	if got, err := usd(5).Sub(usd(7)); err != nil || got != usd(-2) {
		t.Errorf("5-7 = %v, %v", got, err)
	}
	if _, err := usd(math.MaxInt64/3 + 1).Times(3); domain.ReasonOf(err) != domain.ReasonAmountOverflow {
		t.Errorf("times overflow: %v", err)
	}
	for _, code := range []string{"USD", "EUR", "JPY"} {
		if !domain.ValidCurrency(code) {
			t.Errorf("%s refused", code)
		}
	}
	for _, code := range []string{"", "US", "usd", "USDX", "U$D"} {
		if domain.ValidCurrency(code) {
			t.Errorf("%q accepted", code)
		}
	}
}

// TestApplyBeforeCreation: a stream whose first events were truncated (a
// soft delete) can start past its creation; such events fold to nothing,
// rather than panic or make a half-made aggregate look existing.
func TestApplyBeforeCreation(t *testing.T) {
	c := customerWith(
		domain.CreditLimitChanged{CustomerID: custID, CreditLimit: usd(500)},
		domain.CreditReserved{CustomerID: custID, OrderID: orderID, Amount: usd(100)},
		domain.CreditLimitExceeded{CustomerID: custID, OrderID: order2, Amount: usd(100)},
		domain.CreditReleased{CustomerID: custID, OrderID: orderID, Amount: usd(100)},
	)
	if !reflect.DeepEqual(c, domain.NewCustomer(custID)) {
		t.Fatalf("unregistered customer after credit events = %+v; want none", c)
	}
	if c := customerWith(domain.CreditReserved{CustomerID: custID, OrderID: orderID, Amount: usd(100)}, registered); c.Reserved.Minor != 0 || c.HasReservation(orderID) {
		t.Fatalf("a reservation before the registration counts: %+v", c)
	}
	for _, ev := range []domain.Event{domain.OrderApproved{OrderID: orderID}, domain.OrderRejected{OrderID: orderID, Reason: "r"}, domain.OrderCancelled{OrderID: orderID, Reason: "r"}} {
		if o := orderWith(ev); !reflect.DeepEqual(o, domain.NewOrder(orderID)) {
			t.Errorf("order after only %T = %+v; want none", ev, o)
		}
	}
}
