package admin

import (
	"context"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/console"
)

// RegisterGateway routes the admin REST endpoints of mux to the gRPC
// service behind conn (a serve.GatewayRegistrar), and serves the console
// beside them: the page calls these routes on its own origin, so it is
// served wherever they are, and only there.
func RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	if err := orderlyv1.RegisterAdminServiceHandlerClient(ctx, mux, orderlyv1.NewAdminServiceClient(conn)); err != nil {
		return fmt.Errorf("admin gateway: %w", err)
	}
	page := console.Handler()
	if err := mux.HandlePath(http.MethodGet, console.Path, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		page.ServeHTTP(w, r)
	}); err != nil {
		return fmt.Errorf("admin gateway: console: %w", err)
	}
	return nil
}
