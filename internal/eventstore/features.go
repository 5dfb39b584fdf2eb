package eventstore

import (
	"context"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
)

// serverVersion is what the handshake reports. The client parses it as
// numbers (a suffix such as "-rc1" closes the client for good) and enables
// features by version, so it names the EventStoreDB release whose stream API
// this store follows.
const serverVersion = "24.10.0"

type features struct {
	serverfeatures.UnimplementedServerFeaturesServer
}

// GetSupportedMethods is the client's connect-time handshake. Listing no
// batch append or persistent-subscription methods keeps the client on the
// plain Streams calls implemented here.
func (features) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const streamsService = "event_store.client.streams.streams"
	methods := []*serverfeatures.SupportedMethod{
		{ServiceName: "event_store.client.server_features.serverfeatures", MethodName: "getsupportedmethods"},
	}
	for _, m := range []string{"read", "append", "delete", "tombstone"} {
		methods = append(methods, &serverfeatures.SupportedMethod{ServiceName: streamsService, MethodName: m})
	}
	return &serverfeatures.SupportedMethods{EventStoreServerVersion: serverVersion, Methods: methods}, nil
}
