package serve

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// strictQuery is grpc-gateway's query parser, except that a parameter that
// names no field of the request is refused, as an unknown field of a JSON
// body is: grpc-gateway would skip it, and a misspelt page_size or status
// filter would quietly answer a different question.
type strictQuery struct{ runtime.DefaultQueryParser }

func (p *strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	md := msg.ProtoReflect().Descriptor()
	for _, key := range slices.Sorted(maps.Keys(values)) { // the same one named each time
		if !namesField(md, key) {
			return fmt.Errorf("unknown query parameter %q", key)
		}
	}
	return p.DefaultQueryParser.Parse(msg, values, filter)
}

// namesField reports whether key, a dotted path of proto or JSON field
// names, leads to a field of md through singular messages, with a [map key]
// at its end exactly when that field is a map (what grpc-gateway's parser
// accepts).
func namesField(md protoreflect.MessageDescriptor, key string) bool {
	mapKey := false
	if i := strings.IndexByte(key, '['); i >= 0 && strings.HasSuffix(key, "]") {
		key, mapKey = key[:i], true
	}
	names := strings.Split(key, ".")
	for i, name := range names {
		fd := md.Fields().ByTextName(name)
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return false
		}
		if i == len(names)-1 {
			return fd.IsMap() == mapKey
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return false
		}
		md = fd.Message()
	}
	return false
}
