package auth

import (
	"fmt"
	"slices"
	"strings"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
)

// Permission is what a credential allows.
type Permission string

const (
	// CustomersWrite allows the commands on customers.
	CustomersWrite Permission = "customers:write"
	// OrdersWrite allows the commands on orders.
	OrdersWrite Permission = "orders:write"
	// Read allows every query (and /metrics under -metrics-auth).
	Read Permission = "read"
	// Admin allows everything.
	Admin Permission = "admin"
)

var known = []Permission{CustomersWrite, OrdersWrite, Read, Admin}

// parsePermission checks a permission's spelling.
func parsePermission(s string) (Permission, error) {
	p := Permission(s)
	if !slices.Contains(known, p) {
		return "", fmt.Errorf("unknown permission %q (known: %s)", s, joinKnown())
	}
	return p, nil
}

func joinKnown() string {
	s := make([]string, len(known))
	for i, p := range known {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// open is the permission of the methods anyone may call: health checks
// (orchestrators and load balancers have no credentials) and reflection,
// which tells no more than /openapi.json.
const open Permission = ""

// methods is the permission every RPC needs, by full method name. A method
// missing here needs Admin (see required), and a test fails for each method
// of our services missing here.
var methods = map[string]Permission{
	orderlyv1.CommandService_RegisterCustomer_FullMethodName:  CustomersWrite,
	orderlyv1.CommandService_ChangeCreditLimit_FullMethodName: CustomersWrite,
	orderlyv1.CommandService_PlaceOrder_FullMethodName:        OrdersWrite,
	orderlyv1.CommandService_CancelOrder_FullMethodName:       OrdersWrite,

	orderlyv1.QueryService_GetOrder_FullMethodName:        Read,
	orderlyv1.QueryService_ListOrders_FullMethodName:      Read,
	orderlyv1.QueryService_GetCustomer_FullMethodName:     Read,
	orderlyv1.QueryService_ListCustomers_FullMethodName:   Read,
	orderlyv1.QueryService_GetOrderHistory_FullMethodName: Read,
	orderlyv1.QueryService_GetOrderAt_FullMethodName:      Read,
	orderlyv1.QueryService_WatchOrder_FullMethodName:      Read,

	// Operating the processors, and browsing every stream, is the
	// operator's (internal/admin).
	orderlyv1.AdminService_ListProcessors_FullMethodName:  Admin,
	orderlyv1.AdminService_ListDeadLetters_FullMethodName: Admin,
	orderlyv1.AdminService_RetryDeadLetter_FullMethodName: Admin,
	orderlyv1.AdminService_SkipDeadLetter_FullMethodName:  Admin,
	orderlyv1.AdminService_PauseProcessor_FullMethodName:  Admin,
	orderlyv1.AdminService_ResumeProcessor_FullMethodName: Admin,
	orderlyv1.AdminService_StartRebuild_FullMethodName:    Admin,
	orderlyv1.AdminService_WatchRebuild_FullMethodName:    Admin,
	orderlyv1.AdminService_ReadEvents_FullMethodName:      Admin,

	healthpb.Health_Check_FullMethodName:                             open,
	healthpb.Health_Watch_FullMethodName:                             open,
	"/grpc.health.v1.Health/List":                                    open,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      open,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": open,
}

// required is the permission method needs: unknown methods need Admin, so
// a method added without an entry is closed, not open.
func required(method string) Permission {
	if p, ok := methods[method]; ok {
		return p
	}
	return Admin
}

// Principal is an authenticated caller.
type Principal struct {
	Subject     string
	Permissions []Permission
}

// Allows reports whether p may do what needs perm.
func (p Principal) Allows(perm Permission) bool {
	return perm == open || slices.Contains(p.Permissions, Admin) || slices.Contains(p.Permissions, perm)
}
