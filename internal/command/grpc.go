package command

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/serve"
)

// Register serves orderly.v1.CommandService on srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	orderlyv1.RegisterCommandServiceServer(srv, grpcAPI{s: s})
}

// grpcAPI maps the contract's requests to domain commands and the outcome
// back to responses and statuses.
type grpcAPI struct {
	orderlyv1.UnimplementedCommandServiceServer
	s *Service
}

func (a grpcAPI) RegisterCustomer(ctx context.Context, req *orderlyv1.RegisterCustomerRequest) (*orderlyv1.RegisterCustomerResponse, error) {
	meta, bad := a.s.requestMeta(ctx, req.GetCommandId())
	cmd := domain.RegisterCustomer{
		CustomerID:  customerIDFor(meta.CommandID),
		Name:        req.GetName(),
		Email:       req.GetEmail(),
		CreditLimit: money(req.GetCreditLimit()),
	}
	if err := validate(bad, cmd.Validate()); err != nil {
		return nil, err
	}
	res, err := a.s.registerCustomer(ctx, cmd, meta)
	if err != nil {
		return nil, a.s.status(ctx, err, "register customer")
	}
	return &orderlyv1.RegisterCustomerResponse{CustomerId: cmd.CustomerID, Position: res.Position, Revision: res.Revision}, nil
}

func (a grpcAPI) ChangeCreditLimit(ctx context.Context, req *orderlyv1.ChangeCreditLimitRequest) (*orderlyv1.ChangeCreditLimitResponse, error) {
	meta, bad := a.s.requestMeta(ctx, req.GetCommandId())
	cmd := domain.ChangeCreditLimit{CustomerID: req.GetCustomerId(), CreditLimit: money(req.GetCreditLimit())}
	if err := validate(bad, cmd.Validate()); err != nil {
		return nil, err
	}
	res, err := a.s.changeCreditLimit(ctx, cmd, meta)
	if err != nil {
		return nil, a.s.status(ctx, err, "change credit limit")
	}
	return &orderlyv1.ChangeCreditLimitResponse{CustomerId: cmd.CustomerID, Position: res.Position, Revision: res.Revision}, nil
}

func (a grpcAPI) PlaceOrder(ctx context.Context, req *orderlyv1.PlaceOrderRequest) (*orderlyv1.PlaceOrderResponse, error) {
	meta, bad := a.s.requestMeta(ctx, req.GetCommandId())
	cmd := domain.PlaceOrder{
		OrderID:    orderIDFor(meta.CommandID),
		CustomerID: req.GetCustomerId(),
		Lines:      lines(req.GetLines()),
	}
	if err := validate(bad, cmd.Validate()); err != nil {
		return nil, err
	}
	res, err := a.s.placeOrder(ctx, cmd, meta)
	if err != nil {
		return nil, a.s.status(ctx, err, "place order")
	}
	return &orderlyv1.PlaceOrderResponse{OrderId: cmd.OrderID, Position: res.Position, Revision: res.Revision}, nil
}

func (a grpcAPI) CancelOrder(ctx context.Context, req *orderlyv1.CancelOrderRequest) (*orderlyv1.CancelOrderResponse, error) {
	meta, bad := a.s.requestMeta(ctx, req.GetCommandId())
	cmd := domain.CancelOrder{OrderID: req.GetOrderId(), Reason: req.GetReason()}
	if err := validate(bad, cmd.Validate()); err != nil {
		return nil, err
	}
	res, err := a.s.cancelOrder(ctx, cmd, meta)
	if err != nil {
		return nil, a.s.status(ctx, err, "cancel order")
	}
	return &orderlyv1.CancelOrderResponse{OrderId: cmd.OrderID, Position: res.Position, Revision: res.Revision}, nil
}

// lines converts an order's lines. Past MaxLines+1 they are not converted:
// too many lines are refused without being looked at (PlaceOrder.Validate).
func lines(ls []*orderlyv1.OrderLine) []domain.OrderLine {
	ls = ls[:min(len(ls), domain.MaxLines+1)]
	out := make([]domain.OrderLine, len(ls))
	for i, l := range ls {
		out[i] = domain.OrderLine{SKU: l.GetSku(), Quantity: l.GetQuantity(), UnitPrice: money(l.GetUnitPrice())}
	}
	return out
}

func money(m *orderlyv1.Money) domain.Money {
	return domain.Money{Currency: m.GetCurrencyCode(), Minor: m.GetMinorUnits()}
}

// requestMeta builds the metadata of a client's command: its command ID (a
// random one when the client sent none: the command is then not retryable),
// its correlation ID, and the caller. Malformed keys come back as violations,
// to be reported with the command's own.
func (s *Service) requestMeta(ctx context.Context, commandID string) (eventcodec.Metadata, []domain.FieldViolation) {
	bad := checkCommandID(commandID)
	if commandID == "" {
		commandID = uuid.NewString()
	}
	var correlationID string
	if vals := metadata.ValueFromIncomingContext(ctx, serve.CorrelationHeader); len(vals) > 0 {
		correlationID = vals[0]
		bad = append(bad, checkKey(serve.CorrelationHeader, correlationID)...)
	}
	if correlationID == "" {
		correlationID = uuid.NewString()
	}
	meta := eventcodec.Metadata{CorrelationID: correlationID, CausationID: commandID, CommandID: commandID}
	if s.opts.Identify != nil {
		meta.Actor = s.opts.Identify(ctx)
	}
	return meta, bad
}

// validate reports the request's own violations together with the command's,
// so a client learns about every bad field at once (up to
// domain.MaxViolations of them).
func validate(bad []domain.FieldViolation, cmdErr error) error {
	var de *domain.Error
	if errors.As(cmdErr, &de) {
		de.Prepend(bad...)
		return apierr.Domain(de)
	}
	if len(bad) > 0 {
		return apierr.Domain(&domain.Error{
			Kind: domain.KindInvalid, Reason: domain.ReasonInvalidArgument, Message: "invalid request", Violations: bad,
		})
	}
	return nil
}

// status maps a command's failure to the contract's status: a conflict that
// outlived the retries is Aborted, the rest as apierr.From says.
func (s *Service) status(ctx context.Context, err error, what string) error {
	if errors.Is(err, ErrConflict) {
		return status.Error(codes.Aborted, what+": "+ErrConflict.Error()+"; retry with the same command_id")
	}
	return apierr.From(ctx, s.log, err, what)
}
