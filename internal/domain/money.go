package domain

import (
	"fmt"
	"math"
)

// Money is an exact amount in a currency's minor units (cents for USD).
// JSON tags are part of the stored event schema.
type Money struct {
	Currency string `json:"currency_code"`
	Minor    int64  `json:"minor_units"`
}

// Zero is no money in the given currency.
func Zero(currency string) Money { return Money{Currency: currency} }

func (m Money) String() string { return fmt.Sprintf("%d %s", m.Minor, m.Currency) }

// ValidCurrency reports whether code has the shape of an ISO 4217 alphabetic
// code. The list of live codes changes; the shape does not.
func ValidCurrency(code string) bool {
	if len(code) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return false
		}
	}
	return true
}

// Add returns m+o; the currencies must match and the sum must fit in int64.
func (m Money) Add(o Money) (Money, error) {
	if m.Currency != o.Currency {
		return Money{}, rejected(ReasonCurrencyMismatch, "cannot add %s to %s", o.Currency, m.Currency)
	}
	if (o.Minor > 0 && m.Minor > math.MaxInt64-o.Minor) || (o.Minor < 0 && m.Minor < math.MinInt64-o.Minor) {
		return Money{}, rejected(ReasonAmountOverflow, "amount overflows")
	}
	return Money{Currency: m.Currency, Minor: m.Minor + o.Minor}, nil
}

// Sub returns m-o; the currencies must match and the difference must fit.
func (m Money) Sub(o Money) (Money, error) {
	if o.Minor == math.MinInt64 {
		return Money{}, rejected(ReasonAmountOverflow, "amount overflows")
	}
	return m.Add(Money{Currency: o.Currency, Minor: -o.Minor})
}

// Times returns m×n, refusing overflow.
func (m Money) Times(n int64) (Money, error) {
	if m.Minor != 0 && n != 0 {
		p := m.Minor * n
		if p/n != m.Minor || (m.Minor == -1 && n == math.MinInt64) || (n == -1 && m.Minor == math.MinInt64) {
			return Money{}, rejected(ReasonAmountOverflow, "amount overflows")
		}
		return Money{Currency: m.Currency, Minor: p}, nil
	}
	return Money{Currency: m.Currency}, nil
}
