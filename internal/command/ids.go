package command

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
)

// namespace is the UUIDv5 namespace of every ID the write side derives.
// Changing it would give a retried command new IDs, that is, apply it twice.
var namespace = uuid.MustParse("d9303a9e-bf92-4a3c-83ff-d9c55bb8238c")

// derive names a UUIDv5 after parts. Command IDs may not contain control
// characters (see checkKey), so NUL-separated parts cannot collide.
func derive(parts ...string) uuid.UUID {
	return uuid.NewSHA1(namespace, []byte(strings.Join(parts, "\x00")))
}

// customerIDFor and orderIDFor name the aggregate a creating command makes,
// so that its retry names the same one and meets it already there.
func customerIDFor(commandID string) string { return derive("customer", commandID).String() }
func orderIDFor(commandID string) string    { return derive("order", commandID).String() }

// eventID names the index-th event a command writes to stream, of type typ
// with encoded payload data, for the request fingerprinted fp. The store
// de-duplicates appends by event ID, so even two copies of one command
// racing each other cannot both write. The payload is part of the name
// because the store acknowledges an append of IDs it holds without comparing
// payloads: a command resent under its ID with another payload must
// conflict, not be told the store wrote what it did not (and be folded into
// the cache). The fingerprint is, so that another request making the same
// events conflicts too and is refused (see recorded). The rest of the
// metadata is left out: a retry may carry another correlation ID and is
// still the same write.
//
// Only appends compare event IDs; events stored under the IDs of an earlier
// scheme are still found by the command ID in their metadata (recordedIn).
func eventID(commandID, stream string, index int, fp, typ string, data []byte) uuid.UUID {
	digest := sha256.Sum256(append([]byte(fp+"\x00"+typ+"\x00"), data...))
	return derive("event", commandID, stream, strconv.Itoa(index), hex.EncodeToString(digest[:]))
}

// fingerprint is a digest of a command's request, recorded with its events:
// the command's name and its fields as JSON (Go encodes struct fields in
// declaration order, so the encoding is canonical). Renaming or reordering
// a command's fields changes the fingerprints of its requests, and a retry
// straddling that release would be refused: add fields at the end, with
// omitempty, instead.
func fingerprint(command string, request any) string {
	b, err := json.Marshal(request)
	if err != nil {
		panic(fmt.Sprintf("fingerprint of %s: %v", command, err)) // plain structs of strings and numbers
	}
	digest := sha256.Sum256(append([]byte(command+"\x00"), b...))
	return hex.EncodeToString(digest[:16])
}

// stepPrefix starts the command IDs of the credit saga's steps, and no
// client's: a client command under a step's ID would make the saga take
// that step for done (or refused) and leave its order undecided.
const stepPrefix = "saga:"

// StepCommandID is the command ID of a saga step: the step and the ID of
// the event that triggered it, so a redelivered trigger repeats the ID.
func StepCommandID(step string, trigger uuid.UUID) string {
	return stepPrefix + step + ":" + trigger.String()
}

// checkCommandID validates a client's command ID: a key (checkKey) outside
// the saga's.
func checkCommandID(s string) []domain.FieldViolation {
	if strings.HasPrefix(s, stepPrefix) {
		return []domain.FieldViolation{{Field: "command_id", Description: fmt.Sprintf("must not start with %q: the credit saga's commands use it", stepPrefix)}}
	}
	return checkKey("command_id", s)
}

// checkKey validates a client-chosen key (a command or correlation ID): at
// most MaxCommandIDLen characters of printable UTF-8. Empty is allowed: the
// caller mints one.
func checkKey(field, s string) []domain.FieldViolation {
	switch {
	case !utf8.ValidString(s):
		return []domain.FieldViolation{{Field: field, Description: "must be valid UTF-8"}}
	case utf8.RuneCountInString(s) > domain.MaxCommandIDLen:
		return []domain.FieldViolation{{Field: field, Description: fmt.Sprintf("must be at most %d characters", domain.MaxCommandIDLen)}}
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return []domain.FieldViolation{{Field: field, Description: "must not contain control characters"}}
	}
	return nil
}
