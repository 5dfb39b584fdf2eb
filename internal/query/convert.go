package query

import (
	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/domain"
)

func moneyPB(m domain.Money) *orderlyv1.Money {
	return &orderlyv1.Money{CurrencyCode: m.Currency, MinorUnits: m.Minor}
}

func linesPB(lines []domain.OrderLine) []*orderlyv1.OrderLine {
	out := make([]*orderlyv1.OrderLine, len(lines))
	for i, l := range lines {
		out[i] = &orderlyv1.OrderLine{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: moneyPB(l.UnitPrice)}
	}
	return out
}

var statusPB = map[domain.OrderStatus]orderlyv1.OrderStatus{
	domain.StatusPending:   orderlyv1.OrderStatus_ORDER_STATUS_PENDING,
	domain.StatusApproved:  orderlyv1.OrderStatus_ORDER_STATUS_APPROVED,
	domain.StatusRejected:  orderlyv1.OrderStatus_ORDER_STATUS_REJECTED,
	domain.StatusCancelled: orderlyv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

// statusDomain is statusPB inverted, for filters.
var statusDomain = func() map[orderlyv1.OrderStatus]domain.OrderStatus {
	m := make(map[orderlyv1.OrderStatus]domain.OrderStatus, len(statusPB))
	for d, p := range statusPB {
		m[p] = d
	}
	return m
}()
