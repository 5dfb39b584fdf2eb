package eventcodec_test

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/eventcodec"
)

// FuzzDecode reads arbitrary bytes as the payload of every event type at
// every schema version, and as metadata. Whatever decodes encodes at the
// current schema and decodes again to the same event, and its payload is a
// bounded multiple of the stored one (upcasting v1 lines adds a currency to
// each); whatever does not is refused with an error naming its type.
func FuzzDecode(f *testing.F) {
	reg := eventcodec.Default()
	types := reg.Types()
	index := func(typ string) uint8 {
		for i, t := range types {
			if t == typ {
				return uint8(i)
			}
		}
		f.Fatalf("unregistered %s", typ)
		return 0
	}
	for _, ev := range samples {
		typ, schema, payload, err := reg.Encode(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index(typ), schema, payload)
		f.Add(index(typ), schema+1, payload)
		f.Add(index(typ), schema, payload[:len(payload)/2])
	}
	v1, err := os.ReadFile("testdata/golden/orderly.OrderPlaced.v1.json")
	if err != nil {
		f.Fatal(err)
	}
	placed := index("orderly.OrderPlaced")
	f.Add(placed, 1, v1)
	f.Add(placed, 1, []byte(`{"lines":[{},{},{}],"total_minor":-1}`))
	f.Add(placed, 1, []byte(`{"lines":null}`))
	f.Add(placed, 0, []byte(`{}`))
	meta, err := eventcodec.EncodeMetadata(eventcodec.Metadata{
		Schema: 2, CorrelationID: "c", CausationID: "c", CommandID: "c", Command: "PlaceOrder", Fingerprint: "f", Actor: "a",
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(placed, 2, meta)

	f.Fuzz(func(t *testing.T, typIndex uint8, schema int, payload []byte) {
		typ := types[int(typIndex)%len(types)]
		ev, err := reg.Decode(typ, schema, payload)
		if err != nil {
			if !strings.Contains(err.Error(), typ) {
				t.Fatalf("Decode(%s v%d) = %q: the error does not name the type", typ, schema, err)
			}
		} else {
			gotTyp, gotSchema, again, err := reg.Encode(ev)
			if err != nil || gotTyp != typ || gotSchema != reg.Current(typ) {
				t.Fatalf("Encode(Decode(%s v%d)) = %s v%d, %v", typ, schema, gotTyp, gotSchema, err)
			}
			if limit := 32*len(payload) + 512; len(again) > limit {
				t.Fatalf("%d-byte %s v%d payload re-encodes to %d bytes, over %d", len(payload), typ, schema, len(again), limit)
			}
			ev2, err := reg.Decode(gotTyp, gotSchema, again)
			if err != nil || !reflect.DeepEqual(ev, ev2) {
				t.Fatalf("decode(encode(x)) != x for %s v%d:\n%#v\n%#v (%v)", typ, schema, ev, ev2, err)
			}
			if _, _, fixed, _ := reg.Encode(ev2); !bytes.Equal(fixed, again) {
				t.Fatalf("%s encodes as %s, then as %s", typ, again, fixed)
			}
		}

		m, err := eventcodec.DecodeMetadata(payload)
		if err != nil {
			return
		}
		b, err := eventcodec.EncodeMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := eventcodec.DecodeMetadata(b)
		if err != nil || m2 != m {
			t.Fatalf("metadata round trip: %+v, then %+v (%v)", m, m2, err)
		}
	})
}
