package domain

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Shape limits. They bound the size of every event so that a single command can
// never produce an append the event store refuses.
const (
	MaxNameLen      = 200
	MaxEmailLen     = 254
	MaxReasonLen    = 500
	MaxSKULen       = 64
	MaxLines        = 100
	MaxQuantity     = 10_000
	MaxUnitPrice    = 1_000_000_000_000 // minor units; keeps any total far from int64 overflow
	MaxCreditLimit  = 1_000_000_000_000_000
	MaxCommandIDLen = 128
)

// MaxViolations is the most field violations a refusal lists; one more says
// how many were left out. A client fixes the first ones anyway, and the
// answer stays small whatever the request.
const MaxViolations = 20

// violations collects the problems of a command before answering, so a client
// fixes all its fields in one round trip (up to MaxViolations of them).
type violations struct {
	list    []FieldViolation
	omitted int
}

func (v *violations) add(field, format string, args ...any) {
	if !v.full(field) {
		v.list = append(v.list, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
}

// full reports whether the listing is full, then counting field's violation
// as left out.
func (v *violations) full(field string) bool {
	if len(v.list) < MaxViolations {
		return false
	}
	if v.omitted == 0 {
		// The first one left out names where the listing stops.
		v.list = append(v.list, FieldViolation{Field: field})
	}
	v.omitted++
	return true
}

// close says how many were left out, in the entry naming the first of them.
func (v *violations) close() {
	if v.omitted > 0 {
		v.list[MaxViolations].Description = fmt.Sprintf("and %d more violations from here on, not listed", v.omitted)
	}
}

func (v *violations) err(what string) error {
	if len(v.list) == 0 {
		return nil
	}
	v.close()
	return &Error{Kind: KindInvalid, Reason: ReasonInvalidArgument, Message: "invalid " + what, Violations: v.list, Omitted: v.omitted}
}

// Prepend lists first, an adapter's own violations (a malformed command ID),
// before e's, within the same bound of MaxViolations and one more.
func (e *Error) Prepend(first ...FieldViolation) {
	listed := e.Violations
	if e.Omitted > 0 {
		listed = listed[:len(listed)-1]
	}
	v := violations{list: make([]FieldViolation, 0, min(len(first)+len(e.Violations), MaxViolations+1))}
	add := func(f FieldViolation) {
		if !v.full(f.Field) {
			v.list = append(v.list, f)
		}
	}
	for _, f := range first {
		add(f)
	}
	for _, f := range listed {
		add(f)
	}
	if e.Omitted > 0 {
		v.full(e.Violations[len(e.Violations)-1].Field)
		v.omitted += e.Omitted - 1
	}
	v.close()
	e.Violations, e.Omitted = v.list, v.omitted
}

// checkID requires a canonical lower-case UUID: IDs are minted by the write
// side, so anything else is a client mistake worth naming early.
func (v *violations) checkID(field, id string) {
	if p := IDProblem(id); p != "" {
		v.add(field, "%s", p)
	}
}

// IDProblem says what is wrong with id as an aggregate ID, or "" if nothing.
// Read-side handlers use it so that a bad ID reads the same on both sides.
func IDProblem(id string) string {
	switch {
	case id == "":
		return "is required"
	case !ValidID(id):
		return "must be a UUID like 0b6f1c9e-4d2a-5c8e-9f10-2a3b4c5d6e7f"
	}
	return ""
}

// ValidID reports whether id is a canonical lower-case UUID.
func ValidID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func (v *violations) checkText(field, s string, required bool, maxLen int) {
	switch n := utf8.RuneCountInString(s); {
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case n > maxLen:
		v.add(field, "must be at most %d characters, got %d", maxLen, n)
	case strings.ContainsFunc(s, isControl):
		v.add(field, "must not contain control characters")
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (v *violations) checkEmail(field, email string) {
	if email == "" {
		v.add(field, "is required")
		return
	}
	if len(email) > MaxEmailLen {
		v.add(field, "must be at most %d characters", MaxEmailLen)
		return
	}
	// ParseAddress alone also accepts "Name <a@b>" and comments; we store a
	// bare address, so it must round-trip unchanged.
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" || !strings.Contains(email[strings.LastIndexByte(email, '@')+1:], ".") {
		v.add(field, "must be a plain email address like name@example.com")
	}
}

func (v *violations) checkMoney(field string, m Money, max int64) {
	if !ValidCurrency(m.Currency) {
		v.add(field+".currency_code", "must be a three-letter ISO 4217 code like USD")
	}
	if m.Minor < 0 {
		v.add(field+".minor_units", "must not be negative")
	} else if m.Minor > max {
		v.add(field+".minor_units", "must be at most %d", max)
	}
}
