package command

import (
	"context"
	"fmt"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
)

// RegisterGateway routes the command REST endpoints of mux to the gRPC
// service behind conn (a serve.GatewayRegistrar). Going through a gRPC
// connection, even to the same process, keeps one behaviour for both
// transports: the same interceptors, metrics, logs and statuses.
func RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	if err := orderlyv1.RegisterCommandServiceHandlerClient(ctx, mux, orderlyv1.NewCommandServiceClient(conn)); err != nil {
		return fmt.Errorf("command gateway: %w", err)
	}
	return nil
}
