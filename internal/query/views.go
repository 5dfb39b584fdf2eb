package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/views"
)

const (
	defaultListPage = 50
	maxListPage     = 500
)

// GetOrder serves the order view.
func (s *Service) GetOrder(ctx context.Context, req *orderlyv1.GetOrderRequest) (*orderlyv1.GetOrderResponse, error) {
	if err := checkOrderID(req.GetOrderId()); err != nil {
		return nil, err
	}
	if err := s.await(ctx, req.GetMinPosition()); err != nil {
		return nil, err
	}
	doc, err := s.views.GetOrder(ctx, req.GetOrderId())
	if errors.Is(err, views.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "order %s not found", req.GetOrderId())
	}
	if err != nil {
		return nil, s.viewErr(ctx, err, "get order")
	}
	return &orderlyv1.GetOrderResponse{Order: orderPB(doc)}, nil
}

// orderCursor is ListOrders' keyset position in a page token.
type orderCursor struct {
	CreatedAt int64  `json:"t"` // Unix nanoseconds
	OrderID   string `json:"i"`
}

// ListOrders pages through orders newest first, by keyset: a page starts
// strictly after the last order of the previous one, so orders placed while
// a client pages never shift what it sees next.
func (s *Service) ListOrders(ctx context.Context, req *orderlyv1.ListOrdersRequest) (*orderlyv1.ListOrdersResponse, error) {
	q := views.OrderQuery{CustomerID: req.GetCustomerId()}
	if q.CustomerID != "" {
		if err := checkID("customer_id", q.CustomerID); err != nil {
			return nil, err
		}
	}
	if st := req.GetStatus(); st != orderlyv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		var ok bool
		if q.Status, ok = statusDomain[st]; !ok {
			return nil, apierr.InvalidField("status", fmt.Sprintf("unknown status %d", st))
		}
	}
	size, err := pageSize(req.GetPageSize(), defaultListPage, maxListPage)
	if err != nil {
		return nil, err
	}
	scope := fmt.Sprintf("orders|%s|%d", q.CustomerID, q.Status)
	if tok := req.GetPageToken(); tok != "" {
		var c orderCursor
		if err := s.tokens.Decode(tok, scope, &c); err != nil {
			return nil, invalidToken()
		}
		q.After = &views.OrderCursor{CreatedAt: time.Unix(0, c.CreatedAt).UTC(), OrderID: c.OrderID}
	}
	if err := s.await(ctx, req.GetMinPosition()); err != nil {
		return nil, err
	}
	q.Limit = size + 1
	docs, err := s.views.ListOrders(ctx, q)
	if err != nil {
		return nil, s.viewErr(ctx, err, "list orders")
	}
	resp := &orderlyv1.ListOrdersResponse{}
	if len(docs) > size {
		docs = docs[:size]
		last := docs[size-1].Cursor()
		if resp.NextPageToken, err = s.tokens.Encode(scope, orderCursor{CreatedAt: last.CreatedAt.UnixNano(), OrderID: last.OrderID}); err != nil {
			return nil, apierr.From(ctx, s.log, err, "list orders")
		}
	}
	for _, d := range docs {
		resp.Orders = append(resp.Orders, orderPB(d))
	}
	return resp, nil
}

// GetCustomer serves the customer view with its order counts.
func (s *Service) GetCustomer(ctx context.Context, req *orderlyv1.GetCustomerRequest) (*orderlyv1.GetCustomerResponse, error) {
	if err := checkID("customer_id", req.GetCustomerId()); err != nil {
		return nil, err
	}
	if err := s.await(ctx, req.GetMinPosition()); err != nil {
		return nil, err
	}
	doc, err := s.views.GetCustomer(ctx, req.GetCustomerId())
	if errors.Is(err, views.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "customer %s not found", req.GetCustomerId())
	}
	if err != nil {
		return nil, s.viewErr(ctx, err, "get customer")
	}
	return &orderlyv1.GetCustomerResponse{Customer: customerPB(doc)}, nil
}

// customerCursor is ListCustomers' keyset position in a page token.
type customerCursor struct {
	RegisteredPosition uint64 `json:"p"`
}

// ListCustomers pages through customers in registration order.
func (s *Service) ListCustomers(ctx context.Context, req *orderlyv1.ListCustomersRequest) (*orderlyv1.ListCustomersResponse, error) {
	size, err := pageSize(req.GetPageSize(), defaultListPage, maxListPage)
	if err != nil {
		return nil, err
	}
	const scope = "customers"
	var c customerCursor
	if tok := req.GetPageToken(); tok != "" {
		if err := s.tokens.Decode(tok, scope, &c); err != nil {
			return nil, invalidToken()
		}
	}
	if err := s.await(ctx, req.GetMinPosition()); err != nil {
		return nil, err
	}
	docs, err := s.views.ListCustomers(ctx, views.CustomerQuery{Limit: size + 1, After: c.RegisteredPosition})
	if err != nil {
		return nil, s.viewErr(ctx, err, "list customers")
	}
	resp := &orderlyv1.ListCustomersResponse{}
	if len(docs) > size {
		docs = docs[:size]
		if resp.NextPageToken, err = s.tokens.Encode(scope, customerCursor{docs[size-1].RegisteredPosition}); err != nil {
			return nil, apierr.From(ctx, s.log, err, "list customers")
		}
	}
	for _, d := range docs {
		resp.Customers = append(resp.Customers, customerPB(d))
	}
	return resp, nil
}

func invalidToken() error {
	return apierr.InvalidField("page_token", "is not a token this list issued with these filters; start again without one")
}

func orderPB(d views.OrderDoc) *orderlyv1.Order {
	return &orderlyv1.Order{
		OrderId:         d.OrderID,
		CustomerId:      d.CustomerID,
		Lines:           linesPB(d.Lines),
		Total:           moneyPB(d.Total),
		Status:          statusPB[d.Status],
		RejectionReason: d.Reason,
		CreatedAt:       timestamppb.New(d.CreatedAt),
		UpdatedAt:       timestamppb.New(d.UpdatedAt),
		Revision:        d.Revision,
	}
}

func customerPB(d views.CustomerDoc) *orderlyv1.Customer {
	c := d.OrderCounts
	return &orderlyv1.Customer{
		CustomerId:      d.CustomerID,
		Name:            d.Name,
		Email:           d.Email,
		CreditLimit:     moneyPB(d.CreditLimit),
		CreditReserved:  moneyPB(d.CreditReserved),
		CreditAvailable: moneyPB(d.CreditAvailable()),
		CreatedAt:       timestamppb.New(d.CreatedAt),
		UpdatedAt:       timestamppb.New(d.UpdatedAt),
		Revision:        d.Revision,
		OrderCounts: &orderlyv1.OrderCounts{
			Total: c.Total, Pending: c.Pending, Approved: c.Approved, Rejected: c.Rejected, Cancelled: c.Cancelled,
		},
	}
}
