package command_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/serve"
)

var usd = commandtest.USD

func ctx(t *testing.T) context.Context { return commandtest.Ctx(t, 30*time.Second) }

// TestCommandsHappyPath runs every public command once and checks both the
// responses and the streams they leave, folded with the domain.
func TestCommandsHappyPath(t *testing.T) {
	t.Parallel()
	actorKey := "x-test-user"
	env := commandtest.Start(t, command.Options{Identify: func(ctx context.Context) string {
		if v := metadata.ValueFromIncomingContext(ctx, actorKey); len(v) > 0 {
			return v[0]
		}
		return ""
	}})
	api := env.API
	callCtx := metadata.AppendToOutgoingContext(ctx(t), serve.CorrelationHeader, "corr-1", actorKey, "alice")

	reg, err := api.RegisterCustomer(callCtx, &orderlyv1.RegisterCustomerRequest{
		CommandId: "register-1", Name: "Ada Lovelace", Email: "ada@example.com", CreditLimit: usd(10_000),
	})
	if err != nil {
		t.Fatalf("RegisterCustomer: %v", err)
	}
	if !domain.ValidID(reg.CustomerId) || reg.Revision != 0 || reg.Position == 0 {
		t.Fatalf("RegisterCustomer = %v; want a UUID, revision 0 and a position", reg)
	}
	c := env.Customer(t, reg.CustomerId)
	if !c.Registered || c.Name != "Ada Lovelace" || c.Email != "ada@example.com" || c.CreditLimit != (domain.Money{Currency: "USD", Minor: 10_000}) {
		t.Fatalf("customer after registration = %+v", c)
	}
	first := env.History(t, eventlog.CustomerStream(reg.CustomerId))[0]
	// The fingerprint's own tests are in TestCommandIDReusedWithAnotherRequest.
	wantMeta := eventcodec.Metadata{Schema: 1, CorrelationID: "corr-1", CausationID: "register-1", CommandID: "register-1", Command: "RegisterCustomer", Fingerprint: first.Meta.Fingerprint, Actor: "alice"}
	if first.Meta != wantMeta || first.Meta.Fingerprint == "" || first.Position != reg.Position {
		t.Errorf("stored metadata %+v at %d; want %+v at %d", first.Meta, first.Position, wantMeta, reg.Position)
	}

	chg, err := api.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CustomerId: reg.CustomerId, CreditLimit: usd(20_000)})
	if err != nil {
		t.Fatalf("ChangeCreditLimit: %v", err)
	}
	if chg.CustomerId != reg.CustomerId || chg.Revision != 1 || chg.Position <= reg.Position {
		t.Fatalf("ChangeCreditLimit = %v after %v", chg, reg)
	}
	if got := env.Customer(t, reg.CustomerId).CreditLimit.Minor; got != 20_000 {
		t.Fatalf("credit limit = %d, want 20000", got)
	}

	lines := []*orderlyv1.OrderLine{
		{Sku: "BOOK-1", Quantity: 2, UnitPrice: usd(1_250)},
		{Sku: "PEN.2", Quantity: 3, UnitPrice: usd(100)},
	}
	placed, err := api.PlaceOrder(ctx(t), &orderlyv1.PlaceOrderRequest{CommandId: "order-1", CustomerId: reg.CustomerId, Lines: lines})
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	if !domain.ValidID(placed.OrderId) || placed.OrderId == reg.CustomerId || placed.Revision != 0 || placed.Position <= chg.Position {
		t.Fatalf("PlaceOrder = %v", placed)
	}
	o := env.Order(t, placed.OrderId)
	if o.Status != domain.StatusPending || o.CustomerID != reg.CustomerId || o.Total.Minor != 2_800 || len(o.Lines) != 2 {
		t.Fatalf("order after placing = %+v", o)
	}
	// Without a correlation header, a command starts its own correlation.
	if m := env.History(t, eventlog.OrderStream(placed.OrderId))[0].Meta; m.CorrelationID == "" || m.CorrelationID == "corr-1" || m.CausationID != "order-1" {
		t.Errorf("order metadata = %+v", m)
	}

	cancelled, err := api.CancelOrder(ctx(t), &orderlyv1.CancelOrderRequest{OrderId: placed.OrderId, Reason: "changed my mind"})
	if err != nil {
		t.Fatalf("CancelOrder: %v", err)
	}
	if cancelled.OrderId != placed.OrderId || cancelled.Revision != 1 || cancelled.Position <= placed.Position {
		t.Fatalf("CancelOrder = %v", cancelled)
	}
	if o := env.Order(t, placed.OrderId); o.Status != domain.StatusCancelled || o.Reason != "changed my mind" {
		t.Fatalf("order after cancelling = %+v", o)
	}
}

// TestSagaCommands exercises the in-process commands the saga issues.
func TestSagaCommands(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	svc := env.Service
	cust := env.RegisterCustomer(t, 5_000)
	small, big := env.PlaceOrder(t, cust, 3_000), env.PlaceOrder(t, cust, 3_000)
	meta := func(id string) eventcodec.Metadata { return eventcodec.Metadata{CommandID: id, CorrelationID: "c"} }

	if _, err := svc.ReserveCredit(ctx(t), domain.ReserveCredit{CustomerID: cust, OrderID: small, Amount: domain.Money{Currency: "USD", Minor: 3_000}}, meta("r1")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ReserveCredit(ctx(t), domain.ReserveCredit{CustomerID: cust, OrderID: big, Amount: domain.Money{Currency: "USD", Minor: 3_000}}, meta("r2")); err != nil {
		t.Fatal(err)
	}
	c := env.Customer(t, cust)
	if c.Reserved.Minor != 3_000 || !c.HasReservation(small) || c.HasReservation(big) {
		t.Fatalf("after reserving: reserved %v, small %v, big %v", c.Reserved, c.HasReservation(small), c.HasReservation(big))
	}
	if _, err := svc.ApproveOrder(ctx(t), small, meta("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RejectOrder(ctx(t), big, "no credit", meta("j1")); err != nil {
		t.Fatal(err)
	}
	if s := env.Order(t, small).Status; s != domain.StatusApproved {
		t.Errorf("small order %v, want APPROVED", s)
	}
	if o := env.Order(t, big); o.Status != domain.StatusRejected || o.Reason != "no credit" {
		t.Errorf("big order %+v, want REJECTED", o)
	}
	if _, err := svc.ReleaseCredit(ctx(t), domain.ReleaseCredit{CustomerID: cust, OrderID: small}, meta("l1")); err != nil {
		t.Fatal(err)
	}
	if c := env.Customer(t, cust); c.Reserved.Minor != 0 || c.HasReservation(small) {
		t.Fatalf("after release: reserved %v", c.Reserved)
	}
	// Approving a rejected order is a refusal the saga can recognise.
	_, err := svc.ApproveOrder(ctx(t), big, meta("a2"))
	if domain.KindOf(err) != domain.KindRejected || domain.ReasonOf(err) != domain.ReasonOrderNotPending {
		t.Fatalf("approve rejected order: %v", err)
	}
	if _, err := svc.ApproveOrder(ctx(t), small, eventcodec.Metadata{}); err == nil {
		t.Fatal("a command without a command ID was accepted")
	}
}

// wantStatus fails unless err is a status with code, the ErrorInfo reason
// (when given) and a field violation for each of fields.
func wantStatus(t *testing.T, err error, code codes.Code, reason string, fields ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error %v; want %v", err, code)
	}
	var gotReason string
	got := map[string]bool{}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			gotReason = d.Reason
		case *errdetails.BadRequest:
			for _, v := range d.FieldViolations {
				got[v.Field] = true
			}
		}
	}
	if reason != "" && gotReason != reason {
		t.Errorf("reason %q; want %q (%v)", gotReason, reason, err)
	}
	for _, f := range fields {
		if !got[f] {
			t.Errorf("no violation for %q in %v", f, err)
		}
	}
	if len(got) != len(fields) {
		t.Errorf("violations for %v; want exactly %v", got, fields)
	}
}
