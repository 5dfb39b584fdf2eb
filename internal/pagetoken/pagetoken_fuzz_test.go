package pagetoken_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/orderly/orderly/internal/pagetoken"
)

// FuzzDecode feeds arbitrary tokens and scopes to a codec. A token is
// accepted only if it is, byte for byte, the one the codec seals for that
// scope and payload, so nothing but the key's own tokens gets through, and a
// token never opens under another key or scope. Sealing then opening any
// cursor gives it back.
func FuzzDecode(f *testing.F) {
	key := []byte("fuzz key")
	c := pagetoken.New(key)
	other := pagetoken.New([]byte("other key"))
	for _, s := range []struct {
		scope string
		cur   cursor
	}{
		{"orders|customer=x", cursor{CreatedAt: 1234567, ID: "abc"}},
		{"history|stream=order-1", cursor{}},
		{"", cursor{CreatedAt: -1, ID: "\u2028\x00é"}},
	} {
		tok, err := c.Encode(s.scope, s.cur)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok, s.scope, s.cur.CreatedAt, s.cur.ID)
		f.Add(tok+"\n", s.scope, s.cur.CreatedAt, s.cur.ID)
		f.Add(tok[:len(tok)-1], s.scope+"x", s.cur.CreatedAt, s.cur.ID)
	}
	f.Add("", "", int64(0), "")
	f.Add(".", "s", int64(1), "x")
	f.Add("e30.AAAAAAAAAAAAAAAAAAAAAA", "s", int64(1), "x")

	f.Fuzz(func(t *testing.T, token, scope string, createdAt int64, id string) {
		var raw json.RawMessage
		if err := c.Decode(token, scope, &raw); err != nil {
			if !errors.Is(err, pagetoken.ErrInvalid) {
				t.Fatalf("Decode(%q) = %v, want ErrInvalid", token, err)
			}
		} else {
			// Only Encode seals, and it writes compact JSON, so re-sealing
			// the payload must give the very token accepted.
			if again, err := c.Encode(scope, raw); err != nil || again != token {
				t.Fatalf("accepted %q for scope %q, but the codec seals that payload as %q (%v)", token, scope, again, err)
			}
			if err := other.Decode(token, scope, &raw); !errors.Is(err, pagetoken.ErrInvalid) {
				t.Fatalf("token %q opened under another key: %v", token, err)
			}
			if err := c.Decode(token, scope+"\x00", &raw); !errors.Is(err, pagetoken.ErrInvalid) {
				t.Fatalf("token %q opened under another scope: %v", token, err)
			}
		}

		want := cursor{CreatedAt: createdAt, ID: id}
		tok, err := c.Encode(scope, want)
		if err != nil {
			t.Fatal(err)
		}
		var got cursor
		if err := c.Decode(tok, scope, &got); err != nil {
			t.Fatalf("Decode(Encode(%+v)) = %v", want, err)
		}
		// JSON carries invalid UTF-8 as U+FFFD; compare with what JSON keeps.
		b, _ := json.Marshal(want)
		var kept cursor
		if err := json.Unmarshal(b, &kept); err != nil || got != kept {
			t.Fatalf("round trip: got %+v, want %+v", got, kept)
		}
	})
}
