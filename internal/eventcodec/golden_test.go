package eventcodec_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
)

// Golden files are stored bytes, committed: what every stream already holds.
// A round trip cannot notice a renamed JSON tag (encode and decode change
// together); these files can, because the store will not change with them.
//
// To change a current shape on purpose, add a schema version with an
// upcaster, keep the old version's file, and run
//
//	go test ./internal/eventcodec -run Golden -update
//
// which rewrites only the files of current versions and metadata. Files of
// older versions are history and are never rewritten.
var update = flag.Bool("update", false, "rewrite the golden files of current schema versions and metadata from today's encoding")

const goldenDir = "testdata/golden"

// olderVersions are what stored payloads of superseded schema versions must
// decode (upcast) to, by "<type>.v<version>".
var olderVersions = map[string]domain.Event{
	domain.TypeOrderPlaced + ".v1": domain.OrderPlaced{
		OrderID: orderID, CustomerID: custID,
		Lines: []domain.OrderLine{
			{SKU: "BOOK-1", Quantity: 2, UnitPrice: usd(1250)},
			{SKU: "PEN", Quantity: 1, UnitPrice: usd(199)},
		},
		Total: usd(2699),
	},
}

// metadataSamples are stored metadata documents: today's, with every field
// set, and older writers' forms, which must still decode.
var metadataSamples = []struct {
	name    string
	current bool // written by today's encoder (rewritten by -update)
	want    eventcodec.Metadata
}{
	{"metadata", true, eventcodec.Metadata{
		Schema: 2, CorrelationID: "corr-1", CausationID: "cause-1", CommandID: "cmd-1",
		Command: "PlaceOrder", Fingerprint: "fp-1", Actor: "alice",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
	}},
	// Before trace context was recorded.
	{"metadata.before-trace", false, eventcodec.Metadata{
		Schema: 2, CorrelationID: "corr-1", CausationID: "cause-1", CommandID: "cmd-1",
		Command: "PlaceOrder", Fingerprint: "fp-1", Actor: "alice",
	}},
	// Before commands were named and fingerprinted.
	{"metadata.before-fingerprint", false, eventcodec.Metadata{
		Schema: 1, CorrelationID: "corr-1", CausationID: "cause-1", CommandID: "cmd-1", Actor: "alice",
	}},
}

func golden(t *testing.T, name string, encoded []byte) []byte {
	t.Helper()
	path := filepath.Join(goldenDir, name+".json")
	if *update && encoded != nil {
		if err := os.WriteFile(path, append(encoded, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file for %s: %v (run with -update to write today's)", name, err)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

func TestGoldenEvents(t *testing.T) {
	reg := eventcodec.Default()
	bySample := map[string]domain.Event{}
	for _, ev := range samples {
		mustSetEveryField(t, ev.EventType(), reflect.ValueOf(ev))
		bySample[ev.EventType()] = ev
	}
	want := []string{}
	for _, typ := range reg.Types() {
		current := reg.Current(typ)
		for v := 1; v <= current; v++ {
			name := fmt.Sprintf("%s.v%d", typ, v)
			want = append(want, name+".json")
			t.Run(name, func(t *testing.T) {
				expect, ok := bySample[typ], v == current
				if !ok {
					expect, ok = olderVersions[name]
				}
				if !ok {
					t.Fatalf("no expected value for %s: add a sample (current) or an olderVersions entry", name)
				}
				var encoded []byte
				if v == current {
					_, schema, payload, err := reg.Encode(expect)
					if err != nil || schema != v {
						t.Fatalf("encode: schema %d, %v", schema, err)
					}
					encoded = payload
				}
				stored := golden(t, name, encoded)
				if encoded != nil && !bytes.Equal(encoded, stored) {
					t.Errorf("today's encoding differs from the stored bytes: a stored stream would no longer read the same\n got %s\nwant %s", encoded, stored)
				}
				got, err := reg.Decode(typ, v, stored)
				if err != nil {
					t.Fatalf("decode stored bytes: %v", err)
				}
				if !reflect.DeepEqual(got, expect) {
					t.Errorf("stored bytes decode to\n%#v\nwant\n%#v", got, expect)
				}
			})
		}
	}
	for _, m := range metadataSamples {
		want = append(want, m.name+".json")
	}
	files, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range files {
		have = append(have, f.Name())
	}
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Errorf("golden files %v, want exactly %v", have, want)
	}
}

func TestGoldenMetadata(t *testing.T) {
	for _, m := range metadataSamples {
		t.Run(m.name, func(t *testing.T) {
			var encoded []byte
			if m.current {
				mustSetEveryField(t, "metadata", reflect.ValueOf(m.want))
				var err error
				if encoded, err = eventcodec.EncodeMetadata(m.want); err != nil {
					t.Fatal(err)
				}
			}
			stored := golden(t, m.name, encoded)
			if encoded != nil && !bytes.Equal(encoded, stored) {
				t.Errorf("today's metadata encoding differs from the stored bytes\n got %s\nwant %s", encoded, stored)
			}
			got, err := eventcodec.DecodeMetadata(stored)
			if err != nil || got != m.want {
				t.Errorf("stored metadata decodes to %+v, %v; want %+v", got, err, m.want)
			}
		})
	}
}

// mustSetEveryField fails if a sample leaves a field at its zero value: a
// field the golden bytes never carry is a field whose rename goes unnoticed.
func mustSetEveryField(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			mustSetEveryField(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("sample %s is empty", path)
		}
		for i := range v.Len() {
			mustSetEveryField(t, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	default:
		if v.IsZero() {
			t.Errorf("sample %s is not set", path)
		}
	}
}
