package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Scavenge progress is recorded where EventStoreDB records it, so the
// official clients can follow it by reading or subscribing: "$scavenges"
// gets each scavenge's $scavengeStarted and $scavengeCompleted, and
// "$scavenges-<id>" those and, about once a second, a $scavengeProgress with
// the figures so far. Both are bounded by $maxCount, and a scavenge removes
// what that retires.
const (
	scavengesStream         = "$scavenges"
	scavengeStreamPrefix    = "$scavenges-"
	scavengesMaxCount       = 1000
	scavengeStreamMaxCount  = 100
	eventScavengeStarted    = "$scavengeStarted"
	eventScavengeProgress   = "$scavengeProgress"
	eventScavengeCompleted  = "$scavengeCompleted"
	scavengeRecordTimeLimit = 5 * time.Second
)

// scavengeRecorder writes one scavenge's progress events. A failure to write
// one is logged and does not stop the scavenge: the events are for people.
type scavengeRecorder struct {
	s   *Server
	id  string
	log *slog.Logger
}

func (r *scavengeRecorder) stream() string { return scavengeStreamPrefix + r.id }

func (r *scavengeRecorder) started(ctx context.Context) {
	// Written once: a scavenge that set it each time would leave the last
	// one's metadata for the next to remove.
	r.writeOnce(ctx, metastreamOf(scavengesStream), eventTypeMetadata, map[string]any{"$maxCount": scavengesMaxCount})
	r.writeOnce(ctx, metastreamOf(r.stream()), eventTypeMetadata, map[string]any{"$maxCount": scavengeStreamMaxCount})
	data := map[string]any{"scavengeId": r.id}
	r.write(ctx, scavengesStream, eventScavengeStarted, data)
	r.write(ctx, r.stream(), eventScavengeStarted, data)
}

func (r *scavengeRecorder) progress(ctx context.Context, st scavengeStats) {
	r.write(ctx, r.stream(), eventScavengeProgress, struct {
		ID string `json:"scavengeId"`
		scavengeStats
	}{r.id, st})
}

// completed records the end: EventStoreDB's fields (result Success, Stopped
// or Failed; error; timeTaken as a .NET TimeSpan; spaceSaved) and the figures.
func (r *scavengeRecorder) completed(ctx context.Context, result string, err error, took time.Duration, st scavengeStats) {
	var msg string
	if err != nil {
		msg = err.Error()
	}
	var saved uint64
	if st.DiskAfter > 0 && st.DiskAfter < st.DiskBefore {
		saved = st.DiskBefore - st.DiskAfter
	}
	data := struct {
		ID        string `json:"scavengeId"`
		Result    string `json:"result"`
		Error     string `json:"error"`
		TimeTaken string `json:"timeTaken"`
		Saved     uint64 `json:"spaceSaved"`
		scavengeStats
	}{r.id, result, msg, timeSpan(took), saved, st}
	// The scavenge's own stream last: who follows it knows all is written.
	r.write(ctx, scavengesStream, eventScavengeCompleted, data)
	r.write(ctx, r.stream(), eventScavengeCompleted, data)
}

func (r *scavengeRecorder) write(ctx context.Context, stream, eventType string, data any) {
	r.append(ctx, stream, expectation{kind: expectAny}, eventType, data)
}

// writeOnce writes the event unless the stream has one.
func (r *scavengeRecorder) writeOnce(ctx context.Context, stream, eventType string, data any) {
	r.append(ctx, stream, expectation{kind: expectNoStream}, eventType, data)
}

func (r *scavengeRecorder) append(ctx context.Context, stream string, expect expectation, eventType string, data any) {
	ctx, cancel := context.WithTimeout(ctx, scavengeRecordTimeLimit)
	defer cancel()
	if err := r.s.appendInternal(ctx, stream, expect, eventType, data); err != nil {
		r.log.Warn("scavenge: could not record progress", "stream", stream, "type", eventType, "err", err)
	}
}

// appendInternal appends one JSON event to a stream the store writes
// itself; an expectation that does not hold writes nothing and is no error.
func (s *Server) appendInternal(ctx context.Context, stream string, expect expectation, eventType string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", eventType, err)
	}
	o := &op{kind: opAppend, stream: stream, expect: expect,
		events: []*record{newRecord(stream, newEventID(), eventType, contentTypeJSON, nil, raw)}}
	if o.retention, err = retentionOf(stream, o.events); err != nil {
		return err
	}
	res, err := s.seq.submit(ctx, o)
	if err == nil {
		err = res.err
	}
	if err != nil {
		return fmt.Errorf("append %s to %q: %w", eventType, stream, err)
	}
	return nil
}

// timeSpan formats d as .NET formats a TimeSpan: [d.]hh:mm:ss.fffffff.
func timeSpan(d time.Duration) string {
	ticks := d.Nanoseconds() / 100
	days, rest := ticks/(864e9), ticks%864e9
	s := fmt.Sprintf("%02d:%02d:%02d.%07d", rest/36e9, rest/6e8%60, rest/1e7%60, rest%1e7)
	if days > 0 {
		return fmt.Sprintf("%d.%s", days, s)
	}
	return s
}
