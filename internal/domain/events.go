package domain

// Event is a fact an aggregate recorded. Its JSON form (the struct tags) is the
// stored schema; changing a shape means a new schema version and an upcaster
// in package eventcodec, never a rewrite of the store.
type Event interface {
	// EventType is the stored type name, "orderly.<Aggregate><Fact>".
	EventType() string
}

// Event type names, as stored and as filtered on by subscribers.
const (
	TypeCustomerRegistered  = "orderly.CustomerRegistered"
	TypeCreditLimitChanged  = "orderly.CreditLimitChanged"
	TypeCreditReserved      = "orderly.CreditReserved"
	TypeCreditLimitExceeded = "orderly.CreditLimitExceeded"
	TypeCreditReleased      = "orderly.CreditReleased"
	TypeOrderPlaced         = "orderly.OrderPlaced"
	TypeOrderApproved       = "orderly.OrderApproved"
	TypeOrderRejected       = "orderly.OrderRejected"
	TypeOrderCancelled      = "orderly.OrderCancelled"
)

// CustomerRegistered opens a customer's stream.
type CustomerRegistered struct {
	CustomerID  string `json:"customer_id"`
	Name        string `json:"name"`
	Email       string `json:"email"`
	CreditLimit Money  `json:"credit_limit"`
}

// CreditLimitChanged records a new limit; the previous one is kept for audit.
type CreditLimitChanged struct {
	CustomerID    string `json:"customer_id"`
	CreditLimit   Money  `json:"credit_limit"`
	PreviousLimit Money  `json:"previous_limit"`
}

// CreditReserved holds Amount of the customer's credit for an order.
type CreditReserved struct {
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id"`
	Amount     Money  `json:"amount"`
}

// CreditLimitExceeded records that an order's amount did not fit in the
// customer's available credit at the time.
type CreditLimitExceeded struct {
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id"`
	Amount     Money  `json:"amount"`
	Available  Money  `json:"available"`
}

// CreditReleased gives an order's reserved credit back (compensation).
type CreditReleased struct {
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id"`
	Amount     Money  `json:"amount"`
}

// OrderPlaced opens an order's stream. Schema version 2: prices carry their
// currency (version 1 had bare USD cents; see eventcodec's upcaster).
type OrderPlaced struct {
	OrderID    string      `json:"order_id"`
	CustomerID string      `json:"customer_id"`
	Lines      []OrderLine `json:"lines"`
	Total      Money       `json:"total"`
}

// OrderApproved: the order's credit is reserved.
type OrderApproved struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
}

// OrderRejected: the order's credit could not be reserved.
type OrderRejected struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
}

// OrderCancelled: the client withdrew the order; its credit is to be released.
type OrderCancelled struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason,omitempty"`
}

func (CustomerRegistered) EventType() string  { return TypeCustomerRegistered }
func (CreditLimitChanged) EventType() string  { return TypeCreditLimitChanged }
func (CreditReserved) EventType() string      { return TypeCreditReserved }
func (CreditLimitExceeded) EventType() string { return TypeCreditLimitExceeded }
func (CreditReleased) EventType() string      { return TypeCreditReleased }
func (OrderPlaced) EventType() string         { return TypeOrderPlaced }
func (OrderApproved) EventType() string       { return TypeOrderApproved }
func (OrderRejected) EventType() string       { return TypeOrderRejected }
func (OrderCancelled) EventType() string      { return TypeOrderCancelled }
