package admin

import (
	"context"
	"fmt"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
)

// RegisterGateway routes the admin REST endpoints of mux to the gRPC
// service behind conn (a serve.GatewayRegistrar).
func RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	if err := orderlyv1.RegisterAdminServiceHandlerClient(ctx, mux, orderlyv1.NewAdminServiceClient(conn)); err != nil {
		return fmt.Errorf("admin gateway: %w", err)
	}
	return nil
}
