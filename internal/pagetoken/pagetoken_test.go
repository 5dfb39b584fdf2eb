package pagetoken_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/pagetoken"
)

type cursor struct {
	CreatedAt int64  `json:"c"`
	ID        string `json:"i"`
}

func TestRoundTrip(t *testing.T) {
	c := pagetoken.New([]byte("secret"))
	want := cursor{CreatedAt: 1234567, ID: "abc"}
	tok, err := c.Encode("orders|customer=x", want)
	if err != nil {
		t.Fatal(err)
	}
	var got cursor
	if err := c.Decode(tok, "orders|customer=x", &got); err != nil || got != want {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	// Replicas sharing the key accept each other's tokens.
	if err := pagetoken.New([]byte("secret")).Decode(tok, "orders|customer=x", &got); err != nil {
		t.Fatalf("same key, other codec: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	c := pagetoken.New([]byte("secret"))
	tok, err := c.Encode("orders|customer=x", cursor{ID: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := c.Encode("orders|customer=x", cursor{ID: "abd"})
	if err != nil {
		t.Fatal(err)
	}
	// Splice the payload of one token with the MAC of another.
	spliced := forged[:len(forged)-23] + tok[len(tok)-23:]
	for name, tc := range map[string]struct {
		codec        *pagetoken.Codec
		token, scope string
	}{
		"other scope":    {c, tok, "orders|customer=y"},
		"other key":      {pagetoken.New([]byte("other")), tok, "orders|customer=x"},
		"random key":     {pagetoken.New(nil), tok, "orders|customer=x"},
		"no dot":         {c, "abc", "orders|customer=x"},
		"empty":          {c, "", "orders|customer=x"},
		"bad base64":     {c, "!!!.???", "orders|customer=x"},
		"spliced":        {c, spliced, "orders|customer=x"},
		"truncated mac":  {c, tok[:len(tok)-2], "orders|customer=x"},
		"flipped prefix": {c, "X" + tok[1:], "orders|customer=x"},
		// Found by FuzzDecode: spellings the base64 decoder also takes.
		"line break":    {c, tok[:4] + "\r\n" + tok[4:], "orders|customer=x"},
		"trailing bits": {c, tok[:len(tok)-1] + string(base64URL[strings.IndexByte(base64URL, tok[len(tok)-1])^1]), "orders|customer=x"},
	} {
		var got cursor
		if err := tc.codec.Decode(tc.token, tc.scope, &got); !errors.Is(err, pagetoken.ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
}

// base64URL is the alphabet of base64.RawURLEncoding, in order.
const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
