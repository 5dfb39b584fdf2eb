package domain

import (
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/orderly/orderly/internal/domain/runs"
)

// creditBook is a customer's credit lines, one per order ever decided. At a
// million orders it is the bulk of the customer, so it is kept in three
// parts, each line in exactly one of recent and odd, or else in runs:
//
//   - runs: lines sealed (see SealCredits), as sorted runs of fixed-width
//     entries, the order's UUID as 16 bytes, its state and amount. A
//     snapshot page stores a run as it is, so loading a book is pushing runs,
//     not inserting a million map entries.
//   - recent: lines changed since the last seal, of orders named by
//     canonical UUIDs with amounts in the book's currency (all that
//     decisions make). They shadow runs.
//   - odd: lines that do not fit an entry (another order ID shape, another
//     currency: only hand-written events), kept in full. They shadow runs.
type creditBook struct {
	currency string // of every amount in runs and recent: the registration's
	runs     *runs.Stack
	recent   map[[16]byte]bookEntry
	odd      map[string]orderCredit
	// oddTouched are the odd keys set since the last seal; reset, whether
	// the book was emptied (a registration) since then.
	oddTouched []string
	reset      bool
	// deferred: the lines sealed before the customer was loaded were left
	// where they are stored (see DeferCredits). An order in none of recent,
	// odd and runs then has a line only if resolved says so, and none is
	// known until it is resolved.
	deferred bool
	// resolved are the lines looked up for a deferred book since its last
	// seal (the zero state: none); a seal clears them, as the lines they
	// stand for are still where they were found.
	resolved map[string]orderCredit
}

type bookEntry struct {
	state creditState
	minor int64
}

// A run entry: order UUID, state, amount's minor units (big-endian).
const (
	bookKeyLen   = 16
	bookEntryLen = bookKeyLen + 1 + 8
)

func newCreditBook(currency string) *creditBook {
	return &creditBook{
		currency: currency, runs: runs.New(bookKeyLen, bookEntryLen),
		recent: map[[16]byte]bookEntry{}, odd: map[string]orderCredit{}, reset: true,
	}
}

// bookKey is orderID as a run key, if it is a canonical UUID (whose bytes
// give it back). It allocates nothing: a fold from the first event calls it
// for every credit event.
func bookKey(orderID string) (k [16]byte, ok bool) {
	if !ValidID(orderID) {
		return k, false
	}
	n := 0
	for i := 0; i < len(orderID); i++ {
		c := orderID[i]
		switch {
		case c == '-':
			continue
		case c <= '9':
			c -= '0'
		default: // lower-case hex, as ValidID says
			c -= 'a' - 10
		}
		k[n/2] |= c << (4 * (1 - n%2))
		n++
	}
	return k, true
}

func bookOrderID(k []byte) string {
	s := hex.EncodeToString(k)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

func (b *creditBook) set(orderID string, oc orderCredit) {
	if k, ok := bookKey(orderID); ok && oc.amount.Currency == b.currency {
		b.recent[k] = bookEntry{oc.state, oc.amount.Minor}
		if len(b.odd) > 0 {
			delete(b.odd, orderID)
		}
		return
	}
	if k, ok := bookKey(orderID); ok {
		delete(b.recent, k)
	}
	b.odd[orderID] = oc
	b.oddTouched = append(b.oddTouched, orderID)
}

// get is orderID's line, if it has one; an order a deferred book has not
// resolved has none as far as get says (see lookup).
func (b *creditBook) get(orderID string) (orderCredit, bool) {
	oc, found, _ := b.lookup(orderID)
	return oc, found
}

// lookup finds orderID's line: found, or known to be absent, or neither (an
// order of a deferred book not resolved yet). Newer parts shadow older ones:
// recent and odd, then runs, then what was resolved of the lines below.
func (b *creditBook) lookup(orderID string) (oc orderCredit, found, known bool) {
	if b == nil { // not registered
		return orderCredit{}, false, true
	}
	k, canonical := bookKey(orderID)
	if canonical {
		if l, ok := b.recent[k]; ok {
			return orderCredit{l.state, Money{b.currency, l.minor}}, true, true
		}
	}
	if oc, ok := b.odd[orderID]; ok {
		return oc, true, true
	}
	if canonical {
		if v, ok := b.runs.Get(string(k[:])); ok {
			return b.entryCredit(v), true, true
		}
	}
	if !b.deferred {
		return orderCredit{}, false, true
	}
	oc, known = b.resolved[orderID]
	return oc, known && oc.state != 0, known
}

// entryCredit is the line of a run entry's value (state, then amount).
func (b *creditBook) entryCredit(v string) orderCredit {
	return orderCredit{creditState(v[0]), Money{b.currency, int64(binary.BigEndian.Uint64([]byte(v[1:])))}}
}

// bytes estimates the book's memory: run bytes, and map slots with their
// keys and values.
func (b *creditBook) bytes() int64 {
	return int64(b.runs.Bytes()) + int64(len(b.recent))*48 + int64(len(b.odd)+len(b.resolved))*128
}

// CreditSeal is what a customer's credit book changed since the previous
// seal, as a snapshot page stores it.
type CreditSeal struct {
	// Reset: the book was emptied (the customer registered) since the
	// previous seal; lines sealed before are gone.
	Reset bool
	// Run holds the changed lines of canonical order IDs in the book's
	// currency: sorted fixed-width entries, opaque outside the domain.
	Run string
	// Odd are the other changed lines.
	Odd []CreditLine
}

// CreditLine is one order's line in a credit book.
type CreditLine struct {
	OrderID string
	Credit  Credit
}

// SealCredits turns the lines changed since the last seal into a run of the
// book and returns them, for a snapshot page. It costs O(changes), and
// changes nothing a decision sees.
func (c *Customer) SealCredits() CreditSeal {
	b := c.credits
	if b == nil {
		return CreditSeal{}
	}
	buf := make([]byte, 0, len(b.recent)*bookEntryLen)
	for k, l := range b.recent {
		buf = append(buf, k[:]...)
		buf = append(buf, byte(l.state))
		buf = binary.BigEndian.AppendUint64(buf, uint64(l.minor))
	}
	runs.Sort(buf, bookKeyLen, bookEntryLen)
	seal := CreditSeal{Reset: b.reset, Run: string(buf)}
	if err := b.runs.Push(seal.Run); err != nil {
		panic("domain: sealed an unsorted credit run: " + err.Error()) // keys of a map are distinct
	}
	seen := make(map[string]bool, len(b.oddTouched))
	for _, id := range b.oddTouched {
		if oc, ok := b.odd[id]; ok && !seen[id] {
			seen[id] = true
			seal.Odd = append(seal.Odd, CreditLine{id, Credit{uint8(oc.state), oc.amount}})
		}
	}
	clear(b.recent)
	clear(b.resolved)
	b.oddTouched, b.reset = nil, false
	return seal
}

// RestoreCredits applies a seal to c, after Restore of the head it was
// sealed with; seals are applied in the order they were made. Its run is
// kept, not copied.
func (c *Customer) RestoreCredits(s CreditSeal) error {
	if s.Reset {
		c.credits = newCreditBook(c.Reserved.Currency)
	}
	b := c.credits
	if b == nil {
		if s.Run != "" || len(s.Odd) > 0 {
			return errBadSeal
		}
		return nil
	}
	if err := b.runs.Push(s.Run); err != nil {
		return errBadSeal
	}
	if len(b.odd) > 0 { // lines of this run are newer than odd ones
		for off := 0; off < len(s.Run); off += bookEntryLen {
			delete(b.odd, bookOrderID([]byte(s.Run[off:off+bookKeyLen])))
		}
	}
	for _, l := range s.Odd {
		b.set(l.OrderID, orderCredit{creditState(l.Credit.State), l.Credit.Amount})
	}
	b.oddTouched, b.reset = nil, false
	return nil
}

// Line is orderID's line in s, if s holds one: a lookup in one sealed page,
// for ResolveCredit. A line of the run has its amount's currency left empty:
// it is the book's, which ResolveCredit fills in.
func (s CreditSeal) Line(orderID string) (Credit, bool) {
	if k, ok := bookKey(orderID); ok {
		if v, ok := runs.Find(s.Run, string(k[:]), bookKeyLen, bookEntryLen); ok {
			return Credit{v[0], Money{"", int64(binary.BigEndian.Uint64([]byte(v[1:])))}}, true
		}
	}
	for _, l := range s.Odd {
		if l.OrderID == orderID {
			return l.Credit, true
		}
	}
	return Credit{}, false
}

// Fingerprints are the CreditFingerprint of every order s holds a line of,
// in no particular order.
func (s CreditSeal) Fingerprints() []uint32 {
	fps := make([]uint32, 0, len(s.Run)/bookEntryLen+len(s.Odd))
	for off := 0; off < len(s.Run); off += bookEntryLen {
		fps = append(fps, fnv32(s.Run[off:off+bookKeyLen]))
	}
	for _, l := range s.Odd {
		fps = append(fps, CreditFingerprint(l.OrderID))
	}
	return fps
}

// CreditFingerprint is a 32-bit hash of an order ID, as a filter of the
// lines a sealed page holds stores it: stable across processes and releases
// (stored filters keep it), and computed from the run key of a canonical ID.
// A shared fingerprint costs a look at a page, never a wrong answer.
func CreditFingerprint(orderID string) uint32 {
	if k, ok := bookKey(orderID); ok {
		return fnv32(string(k[:]))
	}
	return fnv32(orderID)
}

// fnv32 is FNV-1a, 32 bits.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// DeferCredits gives c, restored from a snapshot head (Restore), a credit
// book whose sealed lines are left in the store: c then loads at the cost
// of its head, however many orders it has decided. Until an order's line is
// resolved (ResolveCredit), a decision on it fails with ErrCreditUnresolved,
// and CreditLine and HasReservation report none.
func (c *Customer) DeferCredits() {
	if !c.Registered {
		return
	}
	c.credits = newCreditBook(c.Reserved.Currency)
	c.credits.reset, c.credits.deferred = false, true
	c.credits.resolved = map[string]orderCredit{}
}

// CreditResolved reports whether c can decide on orderID's line as it
// stands: always, unless its book is deferred and the line is neither set
// since nor resolved.
func (c *Customer) CreditResolved(orderID string) bool {
	_, _, known := c.credits.lookup(orderID)
	return known
}

// ResolveCredit records orderID's line as the newest sealed page holding it
// has it (found false: no page does), for a deferred book. Lines set or
// sealed since DeferCredits shadow it, as they are newer.
func (c *Customer) ResolveCredit(orderID string, l Credit, found bool) {
	b := c.credits
	if b == nil || !b.deferred {
		return
	}
	if !found {
		b.resolved[orderID] = orderCredit{}
		return
	}
	if l.Amount.Currency == "" { // a run entry: in the book's currency
		l.Amount.Currency = b.currency
	}
	b.resolved[orderID] = orderCredit{creditState(l.State), l.Amount}
}

// ErrCreditUnresolved reports a decision on a deferred credit book's line
// that was not resolved first: a bug of the caller, refused rather than
// decided as if the order had no line.
var ErrCreditUnresolved = errors.New("credit line not resolved before the decision")

// errBadSeal reports a seal that cannot have come from a credit book.
var errBadSeal = errors.New("malformed credit seal")

// CreditRuns is the sealed part of c's credit book, nil before its
// registration: its owner compacts it (runs.Stack is safe for concurrent
// use, so in the background).
func (c *Customer) CreditRuns() *runs.Stack {
	if c.credits == nil {
		return nil
	}
	return c.credits.runs
}

// CreditBytes estimates the memory of c's credit book.
func (c *Customer) CreditBytes() int64 {
	if c.credits == nil {
		return 0
	}
	return c.credits.bytes()
}
