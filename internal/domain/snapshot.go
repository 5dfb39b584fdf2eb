package domain

// FoldVersion names what Apply makes of events. Bump it whenever Apply of
// any aggregate changes the state an event leaves (and whenever an upcaster
// changes a payload without a new schema version): snapshots record it, and
// a snapshot taken under another FoldVersion is discarded, never trusted.
const FoldVersion = 1

// Credit is one order's line in a customer's credit book, as a snapshot
// records it. State is opaque outside the domain: a snapshot stores it and
// gives it back.
type Credit struct {
	State  uint8
	Amount Money
}

// CustomerHead is a customer's state but its credit book.
type CustomerHead struct {
	Registered  bool
	Name, Email string
	CreditLimit Money
	Reserved    Money
}

// Head returns c's state but its credit book.
func (c *Customer) Head() CustomerHead {
	return CustomerHead{Registered: c.Registered, Name: c.Name, Email: c.Email, CreditLimit: c.CreditLimit, Reserved: c.Reserved}
}

// CreditLine returns the credit line of orderID (of a deferred book, as far
// as it has resolved: see DeferCredits).
func (c *Customer) CreditLine(orderID string) (Credit, bool) {
	oc, ok := c.credits.get(orderID)
	return Credit{State: uint8(oc.state), Amount: oc.amount}, ok
}

// Restore sets c's head from a snapshot; its credit book is restored by
// RestoreCredits.
func (c *Customer) Restore(h CustomerHead) {
	c.Registered, c.Name, c.Email, c.CreditLimit, c.Reserved = h.Registered, h.Name, h.Email, h.CreditLimit, h.Reserved
}

// Profile returns a copy of c without its credit book: what PlaceOrder needs
// (registration, currency), safe to share while c goes on folding events.
func (c *Customer) Profile() *Customer {
	p := *c
	p.credits = nil
	return &p
}
