package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
)

func TestFromDomain(t *testing.T) {
	_, invalid := domain.NewCustomer("x").Register(domain.RegisterCustomer{})
	_, missing := domain.NewOrder("o").Approve()
	_, exists := (&domain.Customer{Registered: true}).Register(domain.RegisterCustomer{
		CustomerID: "11111111-1111-5111-8111-111111111111", Name: "n", Email: "a@b.co", CreditLimit: domain.Money{Currency: "USD"},
	})
	_, rule := (&domain.Order{ID: "o", Status: domain.StatusRejected}).Approve()

	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		fields []string
	}{
		{"invalid", invalid, codes.InvalidArgument, domain.ReasonInvalidArgument, []string{"customer_id", "name", "email", "credit_limit.currency_code"}},
		{"wrapped not found", fmt.Errorf("approve: %w", missing), codes.NotFound, domain.ReasonOrderNotFound, nil},
		{"already exists", exists, codes.AlreadyExists, domain.ReasonCustomerExists, nil},
		{"rule", rule, codes.FailedPrecondition, domain.ReasonOrderNotPending, nil},
		{"store unreachable", fmt.Errorf("read: %w", status.Error(codes.Unavailable, "dial tcp 10.0.0.1: refused")), codes.Unavailable, "", nil},
		{"store timeout", fmt.Errorf("append: %w", eventlog.ErrTimeout), codes.Unavailable, "", nil},
		{"connection closed", eventlog.ErrClosed, codes.Unavailable, "", nil},
		{"unexpected", errors.New("disk on fire"), codes.Internal, "", nil},
		{"unexpected status", status.Error(codes.PermissionDenied, "internal detail"), codes.Internal, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(apierr.From(context.Background(), log, tt.err, "op"))
			if st.Code() != tt.code {
				t.Fatalf("code = %v, want %v (%v)", st.Code(), tt.code, st.Message())
			}
			var reason string
			var fields []string
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					reason = d.Reason
					if d.Domain != apierr.ErrorDomain {
						t.Errorf("domain = %q", d.Domain)
					}
				case *errdetails.BadRequest:
					for _, v := range d.FieldViolations {
						fields = append(fields, v.Field)
						if v.Description == "" {
							t.Errorf("field %s has no description", v.Field)
						}
					}
				}
			}
			if reason != tt.reason {
				t.Errorf("reason = %q, want %q", reason, tt.reason)
			}
			if fmt.Sprint(fields) != fmt.Sprint(tt.fields) {
				t.Errorf("fields = %v, want %v", fields, tt.fields)
			}
			if (tt.code == codes.Internal || tt.code == codes.Unavailable) && strings.Contains(st.Message(), "detail") || strings.Contains(st.Message(), "10.0.0.1") {
				t.Errorf("internal error leaks %q", st.Message())
			}
		})
	}
	if apierr.From(context.Background(), log, nil, "x") != nil {
		t.Error("nil error became a status")
	}
}

// The caller's own deadline or cancellation wins over whatever the failure
// looks like: the client gave up, the store did not fail.
func TestFromCallerContext(t *testing.T) {
	storeErr := status.Error(codes.Unavailable, "dial")
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	if got := status.Code(apierr.From(ctx, log, storeErr, "op")); got != codes.DeadlineExceeded {
		t.Errorf("expired caller: %v", got)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if got := status.Code(apierr.From(ctx, log, storeErr, "op")); got != codes.Canceled {
		t.Errorf("canceled caller: %v", got)
	}
}

var log = slog.New(slog.DiscardHandler)
