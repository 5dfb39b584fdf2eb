package domain

import "fmt"

// OrderStatus is where an order stands in the credit flow.
type OrderStatus uint8

const (
	// StatusNone is the status of an order that was never placed.
	StatusNone OrderStatus = iota
	StatusPending
	StatusApproved
	StatusRejected
	StatusCancelled
)

func (s OrderStatus) String() string {
	switch s {
	case StatusNone:
		return "NONE"
	case StatusPending:
		return "PENDING"
	case StatusApproved:
		return "APPROVED"
	case StatusRejected:
		return "REJECTED"
	case StatusCancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("OrderStatus(%d)", uint8(s))
}

// OrderLine is one product line. JSON tags are part of the stored schema.
type OrderLine struct {
	SKU       string `json:"sku"`
	Quantity  int32  `json:"quantity"`
	UnitPrice Money  `json:"unit_price"`
}

// PlaceOrder places an order. OrderID is minted by the caller from the
// command ID.
type PlaceOrder struct {
	OrderID    string
	CustomerID string
	Lines      []OrderLine
}

// Validate checks the command's shape: IDs, line count, SKUs, quantities,
// prices, and one currency for all lines. Too many lines are reported
// without checking any: the cost of refusing stays bounded.
func (c PlaceOrder) Validate() error {
	var v violations
	v.checkID("order_id", c.OrderID)
	v.checkID("customer_id", c.CustomerID)
	switch {
	case len(c.Lines) == 0:
		v.add("lines", "must have at least one line")
	case len(c.Lines) > MaxLines:
		v.add("lines", "must have at most %d lines", MaxLines)
		return v.err("PlaceOrder")
	}
	for i, l := range c.Lines {
		f := fmt.Sprintf("lines[%d]", i)
		if !validSKU(l.SKU) {
			v.add(f+".sku", "must be 1-%d characters of A-Z, a-z, 0-9, '-', '_' or '.'", MaxSKULen)
		}
		if l.Quantity < 1 || l.Quantity > MaxQuantity {
			v.add(f+".quantity", "must be between 1 and %d, got %d", MaxQuantity, l.Quantity)
		}
		v.checkMoney(f+".unit_price", l.UnitPrice, MaxUnitPrice)
		if i > 0 && ValidCurrency(l.UnitPrice.Currency) && ValidCurrency(c.Lines[0].UnitPrice.Currency) &&
			l.UnitPrice.Currency != c.Lines[0].UnitPrice.Currency {
			v.add(f+".unit_price.currency_code", "must be %s like lines[0]", c.Lines[0].UnitPrice.Currency)
		}
	}
	return v.err("PlaceOrder")
}

func validSKU(s string) bool {
	if len(s) == 0 || len(s) > MaxSKULen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// OrderTotal is Σ quantity × unit price. Validated lines cannot overflow
// (MaxLines × MaxQuantity × MaxUnitPrice < 2^63); the check guards the rest.
func OrderTotal(lines []OrderLine) (Money, error) {
	if len(lines) == 0 {
		return Money{}, nil
	}
	total := Zero(lines[0].UnitPrice.Currency)
	for _, l := range lines {
		sub, err := l.UnitPrice.Times(int64(l.Quantity))
		if err != nil {
			return Money{}, err
		}
		if total, err = total.Add(sub); err != nil {
			return Money{}, err
		}
	}
	return total, nil
}

// CancelOrder withdraws an order.
type CancelOrder struct {
	OrderID string
	Reason  string
}

// Validate checks the command's shape.
func (c CancelOrder) Validate() error {
	var v violations
	v.checkID("order_id", c.OrderID)
	v.checkText("reason", c.Reason, false, MaxReasonLen)
	return v.err("CancelOrder")
}

// Order is the order aggregate.
type Order struct {
	ID         string
	CustomerID string
	Lines      []OrderLine
	Total      Money
	Status     OrderStatus
	// Reason says why the order was rejected or cancelled.
	Reason string
}

// NewOrder returns the state of an order with no events yet.
func NewOrder(id string) *Order { return &Order{ID: id} }

// Apply folds one event into the state; see Customer.Apply. Events before
// OrderPlaced are ignored, as a customer's before its registration. (Orders
// have no snapshots, so no fold version is bumped.)
func (o *Order) Apply(e Event) {
	if _, ok := e.(OrderPlaced); !ok && o.Status == StatusNone {
		return
	}
	switch e := e.(type) {
	case OrderPlaced:
		o.CustomerID, o.Lines, o.Total, o.Status = e.CustomerID, e.Lines, e.Total, StatusPending
	case OrderApproved:
		o.Status = StatusApproved
	case OrderRejected:
		o.Status, o.Reason = StatusRejected, e.Reason
	case OrderCancelled:
		o.Status, o.Reason = StatusCancelled, e.Reason
	}
}

// Decided reports whether the credit flow is done with the order: it was
// approved, rejected or cancelled. Of the commands it takes, only a
// cancellation of an approved order is still to come, at a user's word.
func (o *Order) Decided() bool {
	switch o.Status {
	case StatusApproved, StatusRejected, StatusCancelled:
		return true
	}
	return false
}

// Place decides on PlaceOrder, given the state of the ordering customer: the
// customer must exist and the order must be in the customer's currency (credit
// cannot be compared across currencies).
func (o *Order) Place(cmd PlaceOrder, customer *Customer) ([]Event, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	if o.Status != StatusNone {
		return nil, alreadyExists(ReasonOrderExists, "order %s already exists", cmd.OrderID)
	}
	if !customer.Registered || customer.ID != cmd.CustomerID {
		return nil, notFound(ReasonCustomerNotFound, "customer %s not found", cmd.CustomerID)
	}
	if cur := cmd.Lines[0].UnitPrice.Currency; cur != customer.CreditLimit.Currency {
		return nil, rejected(ReasonCurrencyMismatch,
			"customer %s buys in %s, not %s", customer.ID, customer.CreditLimit.Currency, cur)
	}
	total, err := OrderTotal(cmd.Lines)
	if err != nil {
		return nil, err
	}
	return []Event{OrderPlaced{
		OrderID: cmd.OrderID, CustomerID: cmd.CustomerID, Lines: cmd.Lines, Total: total,
	}}, nil
}

func (o *Order) mustExist() error {
	if o.Status == StatusNone {
		return notFound(ReasonOrderNotFound, "order %s not found", o.ID)
	}
	return nil
}

// Approve accepts a pending order once its credit is reserved. Approving an
// approved order changes nothing.
func (o *Order) Approve() ([]Event, error) {
	if err := o.mustExist(); err != nil {
		return nil, err
	}
	switch o.Status {
	case StatusApproved:
		return nil, nil
	case StatusPending:
		return []Event{OrderApproved{OrderID: o.ID, CustomerID: o.CustomerID}}, nil
	}
	return nil, rejected(ReasonOrderNotPending, "order %s is %s, not PENDING", o.ID, o.Status)
}

// Reject refuses a pending order. Rejecting a rejected order changes nothing.
func (o *Order) Reject(reason string) ([]Event, error) {
	if err := o.mustExist(); err != nil {
		return nil, err
	}
	switch o.Status {
	case StatusRejected:
		return nil, nil
	case StatusPending:
		return []Event{OrderRejected{OrderID: o.ID, CustomerID: o.CustomerID, Reason: reason}}, nil
	}
	return nil, rejected(ReasonOrderNotPending, "order %s is %s, not PENDING", o.ID, o.Status)
}

// Cancel decides on CancelOrder: pending and approved orders can be
// cancelled; rejected and cancelled ones cannot.
func (o *Order) Cancel(cmd CancelOrder) ([]Event, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	if err := o.mustExist(); err != nil {
		return nil, err
	}
	switch o.Status {
	case StatusRejected:
		return nil, rejected(ReasonOrderRejected, "order %s was rejected and cannot be cancelled", o.ID)
	case StatusCancelled:
		return nil, rejected(ReasonOrderAlreadyCancelled, "order %s is already cancelled", o.ID)
	}
	return []Event{OrderCancelled{OrderID: o.ID, CustomerID: o.CustomerID, Reason: cmd.Reason}}, nil
}
