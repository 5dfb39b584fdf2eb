package domain

import "fmt"

// RegisterCustomer creates a customer. CustomerID is minted by the caller
// (derived from the command ID, so a retry names the same customer).
type RegisterCustomer struct {
	CustomerID  string
	Name        string
	Email       string
	CreditLimit Money
}

// Validate checks the command's shape.
func (c RegisterCustomer) Validate() error {
	var v violations
	v.checkID("customer_id", c.CustomerID)
	v.checkText("name", c.Name, true, MaxNameLen)
	v.checkEmail("email", c.Email)
	v.checkMoney("credit_limit", c.CreditLimit, MaxCreditLimit)
	return v.err("RegisterCustomer")
}

// ChangeCreditLimit sets a customer's credit limit.
type ChangeCreditLimit struct {
	CustomerID  string
	CreditLimit Money
}

// Validate checks the command's shape.
func (c ChangeCreditLimit) Validate() error {
	var v violations
	v.checkID("customer_id", c.CustomerID)
	v.checkMoney("credit_limit", c.CreditLimit, MaxCreditLimit)
	return v.err("ChangeCreditLimit")
}

// ReserveCredit asks to hold an order's amount (issued by the credit saga).
type ReserveCredit struct {
	CustomerID string
	OrderID    string
	Amount     Money
}

// ReleaseCredit gives an order's reservation back (issued by the credit saga).
type ReleaseCredit struct {
	CustomerID string
	OrderID    string
}

// creditState is where one order stands with respect to a customer's credit.
// Every order is decided at most once: a second ReserveCredit for the same
// order is refused whatever the outcome of the first.
type creditState uint8

const (
	creditReserved creditState = iota + 1
	creditExceeded
	creditReleased
)

type orderCredit struct {
	state  creditState
	amount Money
}

// Customer is the customer aggregate.
type Customer struct {
	ID          string
	Registered  bool
	Name        string
	Email       string
	CreditLimit Money
	// Reserved is the sum of the amounts of active reservations.
	Reserved Money
	credits  *creditBook
}

// NewCustomer returns the state of a customer with no events yet.
func NewCustomer(id string) *Customer { return &Customer{ID: id} }

// Available is the credit that new orders may still reserve.
func (c *Customer) Available() Money {
	// Cannot overflow: Reserved ≤ CreditLimit ≤ MaxCreditLimit by construction.
	return Money{Currency: c.CreditLimit.Currency, Minor: c.CreditLimit.Minor - c.Reserved.Minor}
}

// HasReservation reports whether credit is currently held for orderID (of
// a deferred book, as far as it has resolved: see DeferCredits).
func (c *Customer) HasReservation(orderID string) bool {
	oc, _ := c.credits.get(orderID)
	return oc.state == creditReserved
}

// Apply folds one event into the state. Events of other aggregates and types
// unknown to this version are ignored, so old binaries read new streams.
// Before its registration a customer has no credit book, and events other
// than CustomerRegistered are ignored: a stream whose head was soft-deleted
// (truncated) can start with them, and must load, not panic. (No fold
// version bump: such a history used to panic, and what a limit change before
// the registration set, the registration overwrote.)
func (c *Customer) Apply(e Event) {
	if _, ok := e.(CustomerRegistered); !ok && !c.Registered {
		return
	}
	switch e := e.(type) {
	case CustomerRegistered:
		c.Registered = true
		c.Name, c.Email, c.CreditLimit = e.Name, e.Email, e.CreditLimit
		c.Reserved = Zero(e.CreditLimit.Currency)
		c.credits = newCreditBook(e.CreditLimit.Currency)
	case CreditLimitChanged:
		c.CreditLimit = e.CreditLimit
	case CreditReserved:
		c.credits.set(e.OrderID, orderCredit{state: creditReserved, amount: e.Amount})
		c.Reserved.Minor += e.Amount.Minor
	case CreditLimitExceeded:
		c.credits.set(e.OrderID, orderCredit{state: creditExceeded, amount: e.Amount})
	case CreditReleased:
		c.credits.set(e.OrderID, orderCredit{state: creditReleased, amount: e.Amount})
		c.Reserved.Minor -= e.Amount.Minor
	}
}

// Register decides on RegisterCustomer.
func (c *Customer) Register(cmd RegisterCustomer) ([]Event, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	if c.Registered {
		return nil, alreadyExists(ReasonCustomerExists, "customer %s already exists", cmd.CustomerID)
	}
	return []Event{CustomerRegistered{
		CustomerID: cmd.CustomerID, Name: cmd.Name, Email: cmd.Email, CreditLimit: cmd.CreditLimit,
	}}, nil
}

func (c *Customer) mustExist() error {
	if !c.Registered {
		return notFound(ReasonCustomerNotFound, "customer %s not found", c.ID)
	}
	return nil
}

// ChangeCreditLimit decides on ChangeCreditLimit. Setting the current limit
// again changes nothing.
func (c *Customer) ChangeCreditLimit(cmd ChangeCreditLimit) ([]Event, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	if err := c.mustExist(); err != nil {
		return nil, err
	}
	if cmd.CreditLimit.Currency != c.CreditLimit.Currency {
		return nil, rejected(ReasonCurrencyMismatch,
			"customer %s keeps credit in %s, not %s", c.ID, c.CreditLimit.Currency, cmd.CreditLimit.Currency)
	}
	if cmd.CreditLimit.Minor < c.Reserved.Minor {
		return nil, rejected(ReasonLimitBelowReserved,
			"credit limit %s is below the %s already reserved", cmd.CreditLimit, c.Reserved)
	}
	if cmd.CreditLimit == c.CreditLimit {
		return nil, nil
	}
	return []Event{CreditLimitChanged{
		CustomerID: c.ID, CreditLimit: cmd.CreditLimit, PreviousLimit: c.CreditLimit,
	}}, nil
}

// ReserveCredit decides whether an order's amount fits in the available
// credit. Both outcomes are events; refusing to decide twice for one order is
// what keeps a redelivered saga step from reserving twice.
func (c *Customer) ReserveCredit(cmd ReserveCredit) ([]Event, error) {
	if err := c.mustExist(); err != nil {
		return nil, err
	}
	_, decided, known := c.credits.lookup(cmd.OrderID)
	if !known {
		return nil, fmt.Errorf("order %s: %w", cmd.OrderID, ErrCreditUnresolved)
	}
	if decided {
		return nil, rejected(ReasonCreditAlreadyDecided, "credit for order %s was already decided", cmd.OrderID)
	}
	if cmd.Amount.Currency != c.CreditLimit.Currency {
		return nil, rejected(ReasonCurrencyMismatch,
			"customer %s keeps credit in %s, not %s", c.ID, c.CreditLimit.Currency, cmd.Amount.Currency)
	}
	if avail := c.Available(); cmd.Amount.Minor > avail.Minor {
		return []Event{CreditLimitExceeded{
			CustomerID: c.ID, OrderID: cmd.OrderID, Amount: cmd.Amount, Available: avail,
		}}, nil
	}
	return []Event{CreditReserved{CustomerID: c.ID, OrderID: cmd.OrderID, Amount: cmd.Amount}}, nil
}

// ReleaseCredit releases an order's active reservation. With none (never
// reserved, refused, or already released) there is nothing to do, so
// compensation can be retried freely.
func (c *Customer) ReleaseCredit(cmd ReleaseCredit) ([]Event, error) {
	if err := c.mustExist(); err != nil {
		return nil, err
	}
	oc, _, known := c.credits.lookup(cmd.OrderID)
	if !known {
		return nil, fmt.Errorf("order %s: %w", cmd.OrderID, ErrCreditUnresolved)
	}
	if oc.state != creditReserved {
		return nil, nil
	}
	return []Event{CreditReleased{CustomerID: c.ID, OrderID: cmd.OrderID, Amount: oc.amount}}, nil
}
