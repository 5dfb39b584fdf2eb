package eventstore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/cockroachdb/pebble/v2"
	"github.com/orderly/orderly/gen/event_store/client/operations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Access is the store's access control, as EventStoreDB's: users with
// passwords, sent by the official clients as basic auth (over TLS only),
// and each stream's $acl in its metadata, enforced on reads, subscriptions,
// appends, deletes and metadata. Members of $admins may do anything;
// system streams ($...) and $all are theirs alone. A stream without an $acl,
// or an $acl without a key, lets every authenticated user do what the key
// is for (EventStoreDB's default $userStreamAcl). Anonymous calls are
// refused, as EventStoreDB does since anonymous access is off by default.
type Access struct {
	users map[string]storeUser
}

// User is an account of the store.
type User struct {
	Name, Password string
	Groups         []string
}

type storeUser struct {
	digest [sha256.Size]byte
	groups []string
}

// AdminsGroup is the group whose members bypass every $acl; OpsGroup's
// members may run the Operations service's calls (scavenges), as in
// EventStoreDB, and nothing more than other users otherwise.
const (
	AdminsGroup = "$admins"
	OpsGroup    = "$ops"
)

// operationsMethods is the prefix of every call of the Operations service.
var operationsMethods = "/" + operations.Operations_ServiceDesc.ServiceName + "/"

// NewAccess returns access control for users.
func NewAccess(users []User) (*Access, error) {
	a := &Access{users: map[string]storeUser{}}
	for _, u := range users {
		switch {
		case u.Name == "" || strings.ContainsAny(u.Name, ": \t"):
			return nil, fmt.Errorf("event store user %q: a name without spaces or colons", u.Name)
		case len(u.Password) < 8:
			return nil, fmt.Errorf("event store user %q: a password of at least 8 characters", u.Name)
		case a.users[u.Name].groups != nil:
			return nil, fmt.Errorf("event store user %q twice", u.Name)
		}
		a.users[u.Name] = storeUser{digest: sha256.Sum256([]byte(u.Password)), groups: append([]string{}, u.Groups...)}
	}
	return a, nil
}

// caller is an authenticated user: its name and groups.
type caller struct {
	name   string
	groups []string
}

func (c caller) admin() bool { return slices.Contains(c.groups, AdminsGroup) }

// authenticate reads the basic credentials of a call. The password is
// compared by SHA-256 digest in constant time; user names are not secret.
func (a *Access) authenticate(ctx context.Context) (caller, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return caller{}, status.Error(codes.PermissionDenied, "access denied: anonymous access is off; connect with credentials (esdb://user:password@host?tls=true)")
	}
	scheme, encoded, _ := strings.Cut(vals[0], " ")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	name, password, ok := strings.Cut(string(raw), ":")
	if len(vals) != 1 || !strings.EqualFold(scheme, "Basic") || err != nil || !ok {
		return caller{}, status.Error(codes.Unauthenticated, "bad credentials: want basic auth")
	}
	u, known := a.users[name]
	d := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(d[:], u.digest[:]) != 1 || !known {
		return caller{}, status.Error(codes.Unauthenticated, "bad credentials")
	}
	return caller{name: name, groups: u.groups}, nil
}

// aclKey is the $acl key of an operation.
type aclKey string

const (
	aclRead       aclKey = "$r"
	aclWrite      aclKey = "$w"
	aclDelete     aclKey = "$d"
	aclMetaRead   aclKey = "$mr"
	aclMetaWrite  aclKey = "$mw"
	allStreamName        = "$all"
	// allUsers in an $acl is every authenticated user.
	allUsers = "$all"
)

// check says whether c may do op on stream (a "$$stream" metadata stream
// counts as its stream's metadata).
func (s *Server) check(c caller, op aclKey, stream string) error {
	if c.admin() {
		return nil
	}
	if original, ok := originalOf(stream); ok {
		stream = original
		switch op {
		case aclRead:
			op = aclMetaRead
		case aclWrite:
			op = aclMetaWrite
		}
	}
	deny := status.Errorf(codes.PermissionDenied, "access denied: %s may not %s %q", c.name, opName[op], stream)
	if strings.HasPrefix(stream, "$") {
		return deny // system streams and $all: $admins only
	}
	roles, err := s.aclRoles(stream, op)
	if err != nil {
		return status.Errorf(codes.Internal, "access control of %q: %v", stream, err)
	}
	if roles == nil || slices.Contains(roles, allUsers) || slices.Contains(roles, c.name) || slices.ContainsFunc(c.groups, func(g string) bool { return slices.Contains(roles, g) }) {
		return nil
	}
	return deny
}

var opName = map[aclKey]string{aclRead: "read", aclWrite: "write to", aclDelete: "delete", aclMetaRead: "read the metadata of", aclMetaWrite: "write the metadata of"}

// aclRoles are the roles the latest $acl of stream gives op; nil when it
// says nothing of op (the default: every authenticated user).
func (s *Server) aclRoles(stream string, op aclKey) ([]string, error) {
	var raw []byte
	err := s.durable.read(func(r pebble.Reader) error {
		return scanStream(r, metastreamOf(stream), 0, math.MaxUint64, true, func(e *entry) (bool, error) {
			rec, err := e.record()
			if err != nil {
				return false, err
			}
			raw = rec.GetData()
			return false, nil
		})
	})
	if err != nil || raw == nil {
		return nil, err
	}
	var md struct {
		ACL json.RawMessage `json:"$acl"`
	}
	if err := json.Unmarshal(raw, &md); err != nil || md.ACL == nil {
		return nil, nil // checked when written; no $acl
	}
	var roles map[aclKey]json.RawMessage
	if json.Unmarshal(md.ACL, &roles) != nil {
		return nil, nil // "$userStreamAcl": the default
	}
	v, ok := roles[op]
	if !ok {
		return nil, nil
	}
	var one string
	if json.Unmarshal(v, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(v, &many); err != nil {
		return nil, errors.New("$acl roles are neither a string nor strings")
	}
	if many == nil {
		many = []string{} // an empty list allows no one but $admins
	}
	return many, nil
}

// accessOptions are the interceptors enforcing access control, when on.
func (s *Server) accessOptions() []grpc.ServerOption {
	if s.cfg.Access == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.accessUnary), grpc.ChainStreamInterceptor(s.accessStream)}
}

// accessUnary checks deletes and tombstones, and keeps the Operations
// service (starting and stopping scavenges) to $admins and $ops; other
// unary calls (server features) are open.
func (s *Server) accessUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, operationsMethods) {
		c, err := s.cfg.Access.authenticate(ctx)
		if err != nil {
			return nil, err
		}
		if !c.admin() && !slices.Contains(c.groups, OpsGroup) {
			return nil, status.Errorf(codes.PermissionDenied, "access denied: %s may not call %s (members of %s and %s may)", c.name, info.FullMethod, AdminsGroup, OpsGroup)
		}
		return handler(ctx, req)
	}
	var stream string
	switch r := req.(type) {
	case *streams.DeleteReq:
		stream = string(r.GetOptions().GetStreamIdentifier().GetStreamName())
	case *streams.TombstoneReq:
		stream = string(r.GetOptions().GetStreamIdentifier().GetStreamName())
	default:
		return handler(ctx, req)
	}
	c, err := s.cfg.Access.authenticate(ctx)
	if err == nil {
		err = s.check(c, aclDelete, stream)
	}
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// accessStream checks reads and subscriptions by their request, appends by
// their options, the first message of each.
func (s *Server) accessStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == streams.Streams_Append_FullMethodName {
		return s.accessAppend(srv, ss, handler)
	}
	c, err := s.cfg.Access.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return handler(srv, &checkedRead{ServerStream: ss, s: s, caller: c})
}

// accessAppend reads the options of an append and checks them before the
// handler runs. A refused append is read to its end before the answer, as
// Append does with its own refusals: the client sends every event before
// it reads the answer, and an early one would reach it as a bare EOF.
func (s *Server) accessAppend(srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	first := new(streams.AppendReq)
	if err := ss.RecvMsg(first); err != nil {
		return err
	}
	c, err := s.cfg.Access.authenticate(ss.Context())
	if err == nil {
		err = s.check(c, aclWrite, string(first.GetOptions().GetStreamIdentifier().GetStreamName()))
	}
	if err != nil {
		drain(ss, s.cfg.MaxAppendSize+s.cfg.MaxEventSize)
		return err
	}
	return handler(srv, &replayedFirst{ServerStream: ss, first: first})
}

// replayedFirst hands the handler the message the check read, then the
// rest of the stream.
type replayedFirst struct {
	grpc.ServerStream
	first *streams.AppendReq
}

func (r *replayedFirst) RecvMsg(m any) error {
	if r.first == nil {
		return r.ServerStream.RecvMsg(m)
	}
	dst, ok := m.(*streams.AppendReq)
	if !ok {
		return status.Errorf(codes.Internal, "append: received into %T", m)
	}
	proto.Merge(dst, r.first)
	r.first = nil
	return nil
}

// checkedRead refuses a read or subscription whose caller may not read its
// stream (or $all).
type checkedRead struct {
	grpc.ServerStream
	s       *Server
	caller  caller
	checked bool
}

func (cs *checkedRead) RecvMsg(m any) error {
	if err := cs.ServerStream.RecvMsg(m); err != nil || cs.checked {
		return err
	}
	cs.checked = true
	r, ok := m.(*streams.ReadReq)
	if !ok {
		return nil
	}
	stream := allStreamName
	if so := r.GetOptions().GetStream(); so != nil {
		stream = string(so.GetStreamIdentifier().GetStreamName())
	}
	return cs.s.check(cs.caller, aclRead, stream)
}
