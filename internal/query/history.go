package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
)

const (
	defaultHistoryPage = 100
	maxHistoryPage     = 1000
)

// historyCursor is the revision the next page starts at.
type historyCursor struct {
	From uint64 `json:"f"`
}

// GetOrderHistory serves the order's stream as recorded, each payload upcast
// to its current schema: an audit trail straight from the store, independent
// of the views.
func (s *Service) GetOrderHistory(ctx context.Context, req *orderlyv1.GetOrderHistoryRequest) (*orderlyv1.GetOrderHistoryResponse, error) {
	if err := checkOrderID(req.GetOrderId()); err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), defaultHistoryPage, maxHistoryPage)
	if err != nil {
		return nil, err
	}
	scope := "history|" + req.GetOrderId()
	var cur historyCursor
	if tok := req.GetPageToken(); tok != "" {
		if err := s.tokens.Decode(tok, scope, &cur); err != nil {
			return nil, invalidToken()
		}
	}
	raw, err := s.readOrder(ctx, req.GetOrderId(), cur.From, uint64(size)+1)
	if err != nil {
		return nil, err
	}
	resp := &orderlyv1.GetOrderHistoryResponse{}
	if len(raw) > size {
		raw = raw[:size]
		if resp.NextPageToken, err = s.tokens.Encode(scope, historyCursor{From: raw[size-1].EventNumber + 1}); err != nil {
			return nil, apierr.From(ctx, s.log, err, "get order history")
		}
	}
	for _, re := range raw {
		r, decodeErr := eventlog.Decode(s.reg, re)
		he, err := s.historyEvent(r)
		if err != nil {
			return nil, apierr.From(ctx, s.log, err, "get order history")
		}
		if decodeErr != nil {
			he.DecodeError = decodeErr.Error()
		}
		resp.Events = append(resp.Events, he)
	}
	return resp, nil
}

func (s *Service) historyEvent(r eventlog.Recorded) (*orderlyv1.HistoryEvent, error) {
	// Recorded holds the decoded event; serving the current schema's JSON of
	// it is exactly "the payload upcast", without a second decode. An event
	// of a type this build does not know is served as it was stored.
	schema, payload := r.Meta.Schema, r.Stored
	if r.Event != nil {
		var err error
		if _, schema, payload, err = s.reg.Encode(r.Event); err != nil {
			return nil, err
		}
	}
	return &orderlyv1.HistoryEvent{
		EventId:             r.EventID.String(),
		Type:                r.Type,
		SchemaVersion:       int32(schema),
		StoredSchemaVersion: int32(r.Meta.Schema),
		Revision:            r.Revision,
		Position:            r.Position,
		RecordedAt:          timestamppb.New(r.RecordedAt),
		PayloadJson:         string(payload),
		CorrelationId:       r.Meta.CorrelationID,
		CausationId:         r.Meta.CausationID,
		CommandId:           r.Meta.CommandID,
		Actor:               r.Meta.Actor,
	}, nil
}

// GetOrderAt folds the order's stream up to a revision or an instant, with
// the same domain code the write side folds with.
func (s *Service) GetOrderAt(ctx context.Context, req *orderlyv1.GetOrderAtRequest) (*orderlyv1.GetOrderAtResponse, error) {
	if err := checkOrderID(req.GetOrderId()); err != nil {
		return nil, err
	}
	var keep func(*esdb.RecordedEvent) bool
	switch p := req.GetPoint().(type) {
	case *orderlyv1.GetOrderAtRequest_Revision:
		keep = func(r *esdb.RecordedEvent) bool { return r.EventNumber <= p.Revision }
	case *orderlyv1.GetOrderAtRequest_AsOf:
		if err := p.AsOf.CheckValid(); err != nil {
			return nil, apierr.InvalidField("as_of", "must be a valid timestamp")
		}
		asOf := p.AsOf.AsTime()
		keep = func(r *esdb.RecordedEvent) bool { return !r.CreatedDate.After(asOf) }
	default:
		return nil, apierr.InvalidField("point", "set either as_of or revision")
	}
	raw, err := s.readOrder(ctx, req.GetOrderId(), 0, 0)
	if err != nil {
		return nil, err
	}
	// Only the events up to the point are decoded: one this server cannot
	// read after it does not spoil the past.
	o := domain.NewOrder(req.GetOrderId())
	var kept []eventlog.Recorded
	for _, re := range raw {
		if !keep(re) {
			break
		}
		r, err := eventlog.Decode(s.reg, re)
		if err != nil {
			return nil, apierr.From(ctx, s.log, err, "get order at")
		}
		o.Apply(r.Event)
		kept = append(kept, r)
	}
	if rev, ok := req.GetPoint().(*orderlyv1.GetOrderAtRequest_Revision); ok && rev.Revision > raw[len(raw)-1].EventNumber {
		return nil, status.Errorf(codes.OutOfRange, "revision %d is past the order's last revision %d", rev.Revision, raw[len(raw)-1].EventNumber)
	}
	if len(kept) == 0 {
		return nil, status.Errorf(codes.NotFound, "order %s did not exist yet at %s", req.GetOrderId(), req.GetAsOf().AsTime().Format(time.RFC3339Nano))
	}
	first, last := kept[0], kept[len(kept)-1]
	return &orderlyv1.GetOrderAtResponse{Order: &orderlyv1.Order{
		OrderId:         o.ID,
		CustomerId:      o.CustomerID,
		Lines:           linesPB(o.Lines),
		Total:           moneyPB(o.Total),
		Status:          statusPB[o.Status],
		RejectionReason: o.Reason,
		CreatedAt:       timestamppb.New(first.RecordedAt),
		UpdatedAt:       timestamppb.New(last.RecordedAt),
		Revision:        last.Revision,
	}}, nil
}

// readOrder reads an order's stream, undecoded; a missing order is NotFound.
func (s *Service) readOrder(ctx context.Context, orderID string, from, max uint64) ([]*esdb.RecordedEvent, error) {
	stream := eventlog.OrderStream(orderID)
	recs, err := storeCall(ctx, s, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return eventlog.ReadRaw(ctx, c, stream, from, max)
	})
	switch {
	case errors.Is(err, eventlog.ErrStreamNotFound) || (err == nil && len(recs) == 0 && from == 0):
		return nil, status.Errorf(codes.NotFound, "order %s not found", orderID)
	case err != nil:
		return nil, apierr.From(ctx, s.log, err, fmt.Sprintf("read order %s", orderID))
	}
	return recs, nil
}

func checkOrderID(id string) error { return checkID("order_id", id) }

func checkID(field, id string) error {
	if p := domain.IDProblem(id); p != "" {
		return apierr.InvalidField(field, p)
	}
	return nil
}

// pageSize applies the default and refuses sizes outside 0..max.
func pageSize(requested int32, def, max int) (int, error) {
	switch {
	case requested == 0:
		return def, nil
	case requested < 0 || int(requested) > max:
		return 0, apierr.InvalidField("page_size", fmt.Sprintf("must be between 1 and %d (0 for the default %d)", max, def))
	}
	return int(requested), nil
}
