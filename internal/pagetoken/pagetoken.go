// Package pagetoken makes the opaque page tokens of list calls. A token holds
// the keyset cursor of the last item served, and is sealed with an HMAC over
// the cursor and the call's scope (its filters), so a client can neither forge
// a cursor nor carry a token over to a list with other filters: either is
// refused as invalid instead of silently serving the wrong page.
package pagetoken

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid reports a token that was not issued for this scope by this key.
var ErrInvalid = errors.New("invalid page token")

// macLen bytes of HMAC-SHA256 are kept: forging 128 bits is out of reach and
// tokens stay short enough for a URL.
const macLen = 16

// Codec seals and opens tokens with one key. Servers that share the key (all
// replicas of query-svc) accept each other's tokens.
type Codec struct {
	key []byte
}

// New returns a codec with key; an empty key gets a random one, valid for the
// life of the process.
func New(key []byte) *Codec {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // never fails on supported platforms
	}
	return &Codec{key: key}
}

// Encode seals cursor (any JSON-encodable value) for scope.
func (c *Codec) Encode(scope string, cursor any) (string, error) {
	payload, err := json.Marshal(cursor)
	if err != nil {
		return "", fmt.Errorf("page token: %w", err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(c.mac(scope, payload)), nil
}

// Decode opens token into cursor, or returns ErrInvalid.
func (c *Codec) Decode(token, scope string, cursor any) error {
	enc := base64.RawURLEncoding
	p, m, ok := strings.Cut(token, ".")
	if !ok {
		return ErrInvalid
	}
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, c.mac(scope, payload)) {
		return ErrInvalid
	}
	// Only the spelling Encode writes opens: the decoder also skips line
	// breaks and ignores non-zero trailing bits, which would give one token
	// many spellings, each a different cache key or log line for one page.
	if enc.EncodeToString(payload) != p || enc.EncodeToString(mac) != m {
		return ErrInvalid
	}
	if err := json.Unmarshal(payload, cursor); err != nil {
		return ErrInvalid
	}
	return nil
}

func (c *Codec) mac(scope string, payload []byte) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(scope))
	h.Write([]byte{0}) // scope and payload cannot run into each other
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}
