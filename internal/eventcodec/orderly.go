package eventcodec

import (
	"encoding/json"
	"fmt"

	"github.com/orderly/orderly/internal/domain"
)

// Default returns the registry of Orderly's events at their current schemas.
func Default() *Registry {
	r := NewRegistry()
	r.Register(domain.CustomerRegistered{}, 1, nil)
	r.Register(domain.CreditLimitChanged{}, 1, nil)
	r.Register(domain.CreditReserved{}, 1, nil)
	r.Register(domain.CreditLimitExceeded{}, 1, nil)
	r.Register(domain.CreditReleased{}, 1, nil)
	r.Register(domain.OrderPlaced{}, 2, map[int]Upcaster{1: orderPlacedV1toV2})
	r.Register(domain.OrderApproved{}, 1, nil)
	r.Register(domain.OrderRejected{}, 1, nil)
	r.Register(domain.OrderCancelled{}, 1, nil)
	return r
}

// V1Currency is the currency of every amount in schema-1 OrderPlaced events:
// before multi-currency support, all prices were US cents.
const V1Currency = "USD"

type orderPlacedV1 struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Lines      []struct {
		SKU            string `json:"sku"`
		Quantity       int32  `json:"quantity"`
		UnitPriceMinor int64  `json:"unit_price_minor"`
	} `json:"lines"`
	TotalMinor int64 `json:"total_minor"`
}

// orderPlacedV1toV2 turns bare minor units into Money in V1Currency.
func orderPlacedV1toV2(payload []byte) ([]byte, error) {
	var v1 orderPlacedV1
	if err := json.Unmarshal(payload, &v1); err != nil {
		return nil, fmt.Errorf("read v1: %w", err)
	}
	v2 := domain.OrderPlaced{
		OrderID:    v1.OrderID,
		CustomerID: v1.CustomerID,
		Lines:      make([]domain.OrderLine, len(v1.Lines)),
		Total:      domain.Money{Currency: V1Currency, Minor: v1.TotalMinor},
	}
	for i, l := range v1.Lines {
		v2.Lines[i] = domain.OrderLine{
			SKU: l.SKU, Quantity: l.Quantity, UnitPrice: domain.Money{Currency: V1Currency, Minor: l.UnitPriceMinor},
		}
	}
	return json.Marshal(v2)
}
