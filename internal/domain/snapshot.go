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

// CreditKey names the order whose credit line e changes; ok is false for
// events that leave the credit book alone. A snapshot holding the lines of
// these orders, as they stand at its end, holds every change its range made.
func CreditKey(e Event) (orderID string, ok bool) {
	switch e := e.(type) {
	case CreditReserved:
		return e.OrderID, true
	case CreditLimitExceeded:
		return e.OrderID, true
	case CreditReleased:
		return e.OrderID, true
	}
	return "", false
}

// Head returns c's state but its credit book.
func (c *Customer) Head() CustomerHead {
	return CustomerHead{Registered: c.Registered, Name: c.Name, Email: c.Email, CreditLimit: c.CreditLimit, Reserved: c.Reserved}
}

// CreditLine returns the credit line of orderID.
func (c *Customer) CreditLine(orderID string) (Credit, bool) {
	oc, ok := c.credits[orderID]
	return Credit{State: uint8(oc.state), Amount: oc.amount}, ok
}

// CreditLines is the size of the credit book.
func (c *Customer) CreditLines() int { return len(c.credits) }

// Restore sets c's head from a snapshot and makes room for lines credit
// lines in all, so that restoring a long book does not rehash it again and
// again. Lines already restored are kept.
func (c *Customer) Restore(h CustomerHead, lines int) {
	c.Registered, c.Name, c.Email, c.CreditLimit, c.Reserved = h.Registered, h.Name, h.Email, h.CreditLimit, h.Reserved
	if c.credits == nil && (h.Registered || lines > 0) {
		c.credits = make(map[string]orderCredit, lines)
	}
}

// RestoreCredit sets one credit line from a snapshot (after Restore).
func (c *Customer) RestoreCredit(orderID string, cr Credit) {
	c.credits[orderID] = orderCredit{state: creditState(cr.State), amount: cr.Amount}
}

// Profile returns a copy of c without its credit book: what PlaceOrder needs
// (registration, currency), safe to share while c goes on folding events.
func (c *Customer) Profile() *Customer {
	p := *c
	p.credits = nil
	return &p
}
