package eventstore

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxStreamNameLen keeps keys small; EventStoreDB has no documented limit,
// but no sane stream name comes close.
const maxStreamNameLen = 1024

// allStream is the name clients use for the global log.
const allStream = "$all"

// validateReadName is validateStreamName for reads and subscriptions, which
// may also name the system streams the store writes itself: the scavenge
// progress streams ("$scavenges", "$scavenges-<id>") and their metadata.
func validateReadName(name string) error {
	stream, ok := originalOf(name)
	if !ok {
		stream = name
	}
	if stream == scavengesStream || strings.HasPrefix(stream, scavengeStreamPrefix) {
		return validateStreamName(strings.TrimPrefix(stream, "$"))
	}
	return validateStreamName(name)
}

// validateStreamName rejects names the store cannot hold and system streams
// ("$..."), which this store does not implement, except the metadata streams
// of the others ("$$stream").
func validateStreamName(name string) error {
	if stream, ok := originalOf(name); ok && !strings.HasPrefix(stream, "$") {
		name = stream
	}
	switch {
	case name == "":
		return status.Error(codes.InvalidArgument, "stream name is empty")
	case len(name) > maxStreamNameLen:
		return status.Errorf(codes.InvalidArgument, "stream name is %d bytes; the limit is %d", len(name), maxStreamNameLen)
	case !utf8.ValidString(name):
		return status.Error(codes.InvalidArgument, "stream name is not valid UTF-8")
	case strings.ContainsRune(name, 0):
		return status.Error(codes.InvalidArgument, "stream name contains a NUL byte")
	case strings.HasPrefix(name, "$"):
		return status.Errorf(codes.Unimplemented, "system stream %q: system streams ($...) other than stream metadata ($$stream) are not supported by the embedded event store", name)
	}
	return nil
}

// eventSize is what counts against MaxEventSize and MaxAppendSize.
func eventSize(rec *record) int {
	n := len(rec.Data) + len(rec.CustomMetadata)
	for k, v := range rec.Metadata {
		n += len(k) + len(v)
	}
	return n
}

func errEventTooLarge(size, limit int) error {
	return status.Errorf(codes.InvalidArgument, "event is %d bytes; the limit is %d (MaxEventSize)", size, limit)
}

func errAppendTooLarge(limit int) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf("append exceeds %d bytes (MaxAppendSize)", limit))
}
