package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderly/orderly/internal/views"
)

// errViewTimeout is the cause of a view store call cut short by the store
// timeout, as opposed to the caller's deadline.
var errViewTimeout = errors.New("view store did not answer in time")

// timedReader bounds each call to the view store by timeout, whatever the
// caller's deadline: a REST caller has none. The stores honour their
// context, so a call cut short returns; it fails with errViewTimeout, which
// viewErr answers as Unavailable, and which a min_position wait does not
// mistake for its own deadline.
type timedReader struct {
	r       views.Reader
	timeout time.Duration
}

func within[T any](ctx context.Context, d time.Duration, op func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, d, errViewTimeout)
	defer cancel()
	v, err := op(ctx)
	if err != nil && errors.Is(context.Cause(ctx), errViewTimeout) {
		err = fmt.Errorf("view store call: %w", errViewTimeout)
	}
	return v, err
}

func (t timedReader) GetOrder(ctx context.Context, orderID string) (views.OrderDoc, error) {
	return within(ctx, t.timeout, func(ctx context.Context) (views.OrderDoc, error) { return t.r.GetOrder(ctx, orderID) })
}

func (t timedReader) ListOrders(ctx context.Context, q views.OrderQuery) ([]views.OrderDoc, error) {
	return within(ctx, t.timeout, func(ctx context.Context) ([]views.OrderDoc, error) { return t.r.ListOrders(ctx, q) })
}

func (t timedReader) GetCustomer(ctx context.Context, customerID string) (views.CustomerDoc, error) {
	return within(ctx, t.timeout, func(ctx context.Context) (views.CustomerDoc, error) { return t.r.GetCustomer(ctx, customerID) })
}

func (t timedReader) ListCustomers(ctx context.Context, q views.CustomerQuery) ([]views.CustomerDoc, error) {
	return within(ctx, t.timeout, func(ctx context.Context) ([]views.CustomerDoc, error) { return t.r.ListCustomers(ctx, q) })
}

func (t timedReader) Checkpoint(ctx context.Context) (uint64, error) {
	return within(ctx, t.timeout, t.r.Checkpoint)
}

func (t timedReader) State(ctx context.Context, v views.View) (views.State, error) {
	return within(ctx, t.timeout, func(ctx context.Context) (views.State, error) { return t.r.State(ctx, v) })
}

var _ views.Reader = timedReader{}
