package eventstore

import (
	"regexp"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// filter is a server-side $all filter on event type or stream name. A nil
// *filter lets everything through.
type filter struct {
	onType   bool
	prefixes []string
	re       *regexp.Regexp
	// checkpointEvery is how many scanned events (matching or not) separate
	// two checkpoints; 0 means none. The client asks for MaxSearchWindow ×
	// CheckpointInterval, and for none with NoMaxSearchWindow.
	checkpointEvery uint64
}

func newFilter(o *streams.ReadReq_Options) (*filter, error) {
	fo := o.GetFilter()
	if fo == nil {
		return nil, nil
	}
	f := &filter{}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	switch v := fo.GetFilter().(type) {
	case *streams.ReadReq_Options_FilterOptions_EventType:
		f.onType, expr = true, v.EventType
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = v.StreamIdentifier
	default:
		return nil, status.Error(codes.InvalidArgument, "filter: neither event type nor stream name")
	}
	switch {
	case expr.GetRegex() != "" && len(expr.GetPrefix()) > 0:
		return nil, status.Error(codes.InvalidArgument, "filter: a regex or prefixes, not both")
	case expr.GetRegex() != "":
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "filter: bad regex: %v", err)
		}
		f.re = re
	case len(expr.GetPrefix()) > 0:
		f.prefixes = expr.GetPrefix()
	default:
		return nil, status.Error(codes.InvalidArgument, "filter: needs a regex or prefixes")
	}
	if w, ok := fo.GetWindow().(*streams.ReadReq_Options_FilterOptions_Max); ok {
		f.checkpointEvery = uint64(w.Max) * uint64(max(fo.GetCheckpointIntervalMultiplier(), 1))
	}
	return f, nil
}

func (f *filter) match(e *entry) (bool, error) {
	if f == nil {
		return true, nil
	}
	subject, err := e.subject(f.onType)
	if err != nil {
		return false, err
	}
	if f.re != nil {
		return f.re.MatchString(subject), nil
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(subject, p) {
			return true, nil
		}
	}
	return false, nil
}
