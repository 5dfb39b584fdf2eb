package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies a refusal so that adapters can pick a status without parsing
// messages.
type Kind uint8

const (
	// KindInvalid: the command is malformed; see Error.Violations.
	KindInvalid Kind = iota + 1
	// KindNotFound: the command names an aggregate that does not exist.
	KindNotFound
	// KindAlreadyExists: the command would create an aggregate that exists.
	KindAlreadyExists
	// KindRejected: well-formed, but a business rule forbids it in the
	// aggregate's current state.
	KindRejected
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not found"
	case KindAlreadyExists:
		return "already exists"
	case KindRejected:
		return "rejected"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Reasons are stable, machine-readable names for refusals (they travel to
// clients as google.rpc.ErrorInfo reasons), so tests and clients never match on
// message text.
const (
	ReasonInvalidArgument       = "INVALID_ARGUMENT"
	ReasonCustomerNotFound      = "CUSTOMER_NOT_FOUND"
	ReasonOrderNotFound         = "ORDER_NOT_FOUND"
	ReasonCustomerExists        = "CUSTOMER_ALREADY_EXISTS"
	ReasonOrderExists           = "ORDER_ALREADY_EXISTS"
	ReasonCurrencyMismatch      = "CURRENCY_MISMATCH"
	ReasonLimitBelowReserved    = "CREDIT_LIMIT_BELOW_RESERVED"
	ReasonCreditAlreadyDecided  = "CREDIT_ALREADY_DECIDED"
	ReasonOrderNotPending       = "ORDER_NOT_PENDING"
	ReasonOrderAlreadyCancelled = "ORDER_ALREADY_CANCELLED"
	ReasonOrderRejected         = "ORDER_REJECTED"
	ReasonAmountOverflow        = "AMOUNT_OVERFLOW"
	ReasonCommandIDReused       = "COMMAND_ID_REUSED"
)

// FieldViolation names one malformed field, with the API's field path
// (e.g. "lines[2].quantity").
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a refusal by the domain.
type Error struct {
	Kind       Kind
	Reason     string
	Message    string
	Violations []FieldViolation // set for KindInvalid
	// Omitted counts the violations left out of Violations: when there are
	// any, the last entry names the first of them and says how many.
	Omitted int
}

func (e *Error) Error() string {
	if len(e.Violations) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return e.Message + ": " + strings.Join(parts, "; ")
}

// KindOf reports the Kind of a domain refusal in err's chain, or 0 when err is
// not one.
func KindOf(err error) Kind {
	var de *Error
	if errors.As(err, &de) {
		return de.Kind
	}
	return 0
}

// ReasonOf reports the Reason of a domain refusal in err's chain, or "".
func ReasonOf(err error) string {
	var de *Error
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

func notFound(reason, format string, args ...any) *Error {
	return &Error{Kind: KindNotFound, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func alreadyExists(reason, format string, args ...any) *Error {
	return &Error{Kind: KindAlreadyExists, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func rejected(reason, format string, args ...any) *Error {
	return &Error{Kind: KindRejected, Reason: reason, Message: fmt.Sprintf(format, args...)}
}
