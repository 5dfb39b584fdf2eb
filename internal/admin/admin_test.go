package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/admin"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
)

// TestListProcessors: every processor is listed, over gRPC and REST, with
// its position reaching the head once the system is idle.
func TestListProcessors(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true, saga: true})
	cust := sys.env.RegisterCustomer(t, 10_000)
	order := sys.env.PlaceOrder(t, cust, 1_000)
	eventually(t, func() (bool, string) {
		st := sys.env.Order(t, order).Status
		return st == domain.StatusApproved, fmt.Sprintf("order %v", st)
	})
	head := sys.env.Head(t)
	eventually(t, func() (bool, string) {
		resp, err := sys.admin.ListProcessors(ctx(t), &orderlyv1.ListProcessorsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range resp.Processors {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, admin.Names()) {
			t.Fatalf("processors %v; want %v", names, admin.Names())
		}
		for _, p := range resp.Processors {
			if p.State != orderlyv1.ProcessorState_PROCESSOR_STATE_CAUGHT_UP || p.LagEvents != 0 || p.Head < head {
				return false, fmt.Sprintf("%s: %v at %d of head %d, lag %d", p.Name, p.State, p.Position, p.Head, p.LagEvents)
			}
		}
		return true, ""
	})
	orders := sys.processor(t, "orders")
	if orders.Kind != orderlyv1.ProcessorKind_PROCESSOR_KIND_PROJECTION || orders.Position == 0 || orders.EventsPerSecond <= 0 {
		t.Errorf("orders = %v; want a projection with a position and a rate", orders)
	}
	if s := sys.processor(t, admin.SagaName); s.Kind != orderlyv1.ProcessorKind_PROCESSOR_KIND_SAGA || s.Position == 0 || s.EventsPerSecond <= 0 {
		t.Errorf("saga = %v; want the saga with a position and a rate", s)
	}
	// Alone, each processor's instance holds every partition.
	for _, name := range admin.Names() {
		p := sys.processor(t, name)
		if p.Instance == "" || p.Partitions != 16 || p.PartitionsHeld != 16 || p.Instances != 1 {
			t.Errorf("%s: instance %q holds %d of %d partitions among %d instances; want all 16, alone", name, p.Instance, p.PartitionsHeld, p.Partitions, p.Instances)
		}
	}

	var rest struct {
		Processors []struct {
			Name     string `json:"name"`
			State    string `json:"state"`
			Position string `json:"position"`
		} `json:"processors"`
	}
	if code := sys.rest(t, http.MethodGet, "/v1/admin/processors", "", &rest); code != http.StatusOK {
		t.Fatalf("GET /v1/admin/processors: %d", code)
	}
	if len(rest.Processors) != 3 || rest.Processors[0].Name != "orders" || rest.Processors[0].State != "PROCESSOR_STATE_CAUGHT_UP" || rest.Processors[0].Position == "0" {
		t.Errorf("REST processors = %+v", rest.Processors)
	}
}

// TestPauseResumeProjection: a paused view stops moving while the other
// view goes on; resumed, it catches up from its checkpoint.
func TestPauseResumeProjection(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true, saga: false})
	first := sys.env.RegisterCustomer(t, 10_000)
	waitPosition(t, sys, "orders", sys.env.Head(t))

	resp, err := sys.admin.PauseProcessor(ctx(t), &orderlyv1.PauseProcessorRequest{Name: "orders"})
	if err != nil {
		t.Fatalf("PauseProcessor: %v", err)
	}
	if resp.Processor.State != orderlyv1.ProcessorState_PROCESSOR_STATE_PAUSED {
		t.Fatalf("paused orders = %v", resp.Processor)
	}
	placed, err := sys.env.API.PlaceOrder(ctx(t), &orderlyv1.PlaceOrderRequest{CustomerId: first,
		Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: commandtest.USD(500)}}})
	if err != nil {
		t.Fatal(err)
	}
	order := placed.OrderId
	later := sys.env.RegisterCustomer(t, 10_000)
	head := sys.env.Head(t)
	// The customers view projects the events after the order: the
	// subscription delivered the order past the paused view, which stays
	// before it (a batch begun before the pause may still have finished).
	waitPosition(t, sys, "customers", head)
	if p := sys.processor(t, "orders"); p.Position >= placed.Position || p.State != orderlyv1.ProcessorState_PROCESSOR_STATE_PAUSED || p.LagEvents == 0 {
		t.Fatalf("paused orders moved past the order placed after the pause: %v (order at %d, head %d)", p, placed.Position, head)
	}
	if _, err := sys.views.GetOrder(ctx(t), order); err == nil {
		t.Fatal("the paused orders view has the order placed after the pause")
	}
	if _, err := sys.views.GetCustomer(ctx(t), later); err != nil {
		t.Fatalf("customers view: %v", err)
	}

	var rest struct {
		Processor struct {
			State string `json:"state"`
		} `json:"processor"`
	}
	if code := sys.rest(t, http.MethodPost, "/v1/admin/processors/orders:resume", "{}", &rest); code != http.StatusOK || rest.Processor.State == "PROCESSOR_STATE_PAUSED" {
		t.Fatalf("POST resume: %d %+v", code, rest)
	}
	waitPosition(t, sys, "orders", head)
	if _, err := sys.views.GetOrder(ctx(t), order); err != nil {
		t.Fatalf("resumed orders view lacks the order: %v", err)
	}
}

// TestPauseResumeSaga: a paused saga starts no event, so an order placed
// meanwhile stays pending while the projector sees it; resumed, the saga
// decides it.
func TestPauseResumeSaga(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true, saga: true})
	cust := sys.env.RegisterCustomer(t, 10_000)
	eventually(t, func() (bool, string) {
		p := sys.processor(t, admin.SagaName)
		return p.State == orderlyv1.ProcessorState_PROCESSOR_STATE_CAUGHT_UP, fmt.Sprintf("saga %v", p.State)
	})
	var rest struct {
		Processor struct {
			State string `json:"state"`
		} `json:"processor"`
	}
	if code := sys.rest(t, http.MethodPost, "/v1/admin/processors/credit-saga:pause", "{}", &rest); code != http.StatusOK || rest.Processor.State != "PROCESSOR_STATE_PAUSED" {
		t.Fatalf("POST pause: %d %+v", code, rest)
	}
	order := sys.env.PlaceOrder(t, cust, 1_000)
	pos := sys.env.Head(t)
	waitPosition(t, sys, "orders", pos) // the event went out to subscribers
	if st := sys.env.Order(t, order).Status; st != domain.StatusPending {
		t.Fatalf("order %v while the saga is paused; want pending", st)
	}
	if p := sys.processor(t, admin.SagaName); p.Position >= pos || p.State != orderlyv1.ProcessorState_PROCESSOR_STATE_PAUSED {
		t.Fatalf("paused saga = %v; want it before %d", p, pos)
	}
	if _, err := sys.admin.ResumeProcessor(ctx(t), &orderlyv1.ResumeProcessorRequest{Name: admin.SagaName}); err != nil {
		t.Fatalf("ResumeProcessor: %v", err)
	}
	eventually(t, func() (bool, string) {
		st := sys.env.Order(t, order).Status
		return st == domain.StatusApproved, fmt.Sprintf("order %v after the resume", st)
	})
}

// waitPosition waits until processor name has applied everything up to pos.
func waitPosition(t *testing.T, sys *system, name string, pos uint64) {
	t.Helper()
	eventually(t, func() (bool, string) {
		p := sys.processor(t, name)
		return p.Position >= pos, fmt.Sprintf("%s at %d (%v), want %d", name, p.Position, p.State, pos)
	})
}

// TestDeadLetterRetryAndSkip: two orders of customers that do not exist
// become dead letters. Once one customer exists, retrying its letter
// (gRPC) resolves it and the order is decided; the other still fails,
// which counts an attempt; skipped over REST, it is closed with its
// reason, recorded in the stream, and a restarted saga replays neither.
func TestDeadLetterRetryAndSkip(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true, saga: true})
	fixable, hopeless := uuid.NewString(), uuid.NewString()
	fixOrder, _ := sys.orphanOrder(t, fixable)
	_, _ = sys.orphanOrder(t, hopeless)
	var letters []*orderlyv1.DeadLetter
	eventually(t, func() (bool, string) {
		resp, err := sys.admin.ListDeadLetters(ctx(t), &orderlyv1.ListDeadLettersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		letters = resp.DeadLetters
		return len(letters) == 2, fmt.Sprintf("%d dead letters", len(letters))
	})
	for _, l := range letters {
		if l.Type != "orderly.OrderPlaced" || l.Reason != "refused" || l.Error == "" || l.Attempts != 1 || l.Status != orderlyv1.DeadLetterStatus_DEAD_LETTER_STATUS_UNRESOLVED || l.FirstAttemptAt == nil {
			t.Errorf("dead letter %v", l)
		}
	}
	eventually(t, func() (bool, string) {
		p := sys.processor(t, admin.SagaName)
		return p.DeadLetters == 2, fmt.Sprintf("saga lists %d dead letters; want 2", p.DeadLetters) // counted once appended
	})
	// Lanes run apart: the letters come in either order.
	fixLetter, hopeLetter := letters[0], letters[1]
	if fixLetter.Stream != "order-"+fixOrder {
		fixLetter, hopeLetter = hopeLetter, fixLetter
	}

	// The missing customer appears (as a restored stream would bring it).
	sys.appendRaw(t, "customer-"+fixable, "orderly.CustomerRegistered", 1, fmt.Sprintf(
		`{"customer_id":%q,"name":"Ada","email":"ada@example.com","credit_limit":{"currency_code":"USD","minor_units":1000}}`, fixable))
	resp, err := sys.admin.RetryDeadLetter(ctx(t), &orderlyv1.RetryDeadLetterRequest{EventId: fixLetter.EventId})
	if err != nil {
		t.Fatalf("RetryDeadLetter: %v", err)
	}
	if got := resp.DeadLetters[0]; got.Status != orderlyv1.DeadLetterStatus_DEAD_LETTER_STATUS_RESOLVED {
		t.Fatalf("retried letter = %v; want resolved", got)
	}
	eventually(t, func() (bool, string) {
		st := sys.env.Order(t, fixOrder).Status
		return st == domain.StatusApproved, fmt.Sprintf("retried order %v", st)
	})

	// The other still fails: an answer, with one more attempt (REST this time).
	var retried struct {
		DeadLetters []struct {
			EventID       string `json:"eventId"`
			Attempts      int    `json:"attempts"`
			Status        string `json:"status"`
			LastAttemptAt string `json:"lastAttemptAt"`
		} `json:"deadLetters"`
	}
	if code := sys.rest(t, http.MethodPost, "/v1/admin/dead-letters:retry", `{"all":true}`, &retried); code != http.StatusOK {
		t.Fatalf("POST retry all: %d", code)
	}
	if len(retried.DeadLetters) != 1 {
		t.Fatalf("retry all = %+v; want the hopeless letter", retried.DeadLetters)
	}
	last, err := time.Parse(time.RFC3339Nano, retried.DeadLetters[0].LastAttemptAt)
	if got := retried.DeadLetters[0]; got.EventID != hopeLetter.EventId || got.Attempts != 2 || got.Status != "DEAD_LETTER_STATUS_UNRESOLVED" ||
		err != nil || !last.After(hopeLetter.FirstAttemptAt.AsTime()) {
		t.Fatalf("retry all = %+v (%v); want the hopeless letter, unresolved, at 2 attempts, attempted after %v", got, err, hopeLetter.FirstAttemptAt.AsTime())
	}
	// Retrying a resolved letter is refused, naming why.
	_, err = sys.admin.RetryDeadLetter(ctx(t), &orderlyv1.RetryDeadLetterRequest{EventId: fixLetter.EventId})
	wantCode(t, err, codes.FailedPrecondition, "retry of a resolved letter")
	if r := reason(err); r != admin.ReasonLetterClosed {
		t.Errorf("reason %q", r)
	}
	_, err = sys.admin.RetryDeadLetter(ctx(t), &orderlyv1.RetryDeadLetterRequest{EventId: uuid.NewString()})
	wantCode(t, err, codes.NotFound, "retry of an unknown letter")

	var skipped struct {
		DeadLetter struct {
			Status     string `json:"status"`
			SkipReason string `json:"skipReason"`
		} `json:"deadLetter"`
	}
	if code := sys.rest(t, http.MethodPost, "/v1/admin/dead-letters/"+hopeLetter.EventId+":skip", `{"reason":"customer erased on request"}`, &skipped); code != http.StatusOK ||
		skipped.DeadLetter.Status != "DEAD_LETTER_STATUS_SKIPPED" || skipped.DeadLetter.SkipReason != "customer erased on request" {
		t.Fatalf("POST skip: %d %+v", code, skipped)
	}
	// Recorded, not silent: the stream holds the skip with its reason.
	var found bool
	for _, r := range rawStream(t, sys, "saga-credit-dead-letters") {
		found = found || (r.typ == "saga-dead-letter-skipped" && strings.Contains(r.data, hopeLetter.EventId) && strings.Contains(r.data, "customer erased"))
	}
	if !found {
		t.Fatal("no skip recorded in the dead-letter stream")
	}
	open, err := sys.admin.ListDeadLetters(ctx(t), &orderlyv1.ListDeadLettersRequest{})
	if err != nil || len(open.DeadLetters) != 0 {
		t.Fatalf("open dead letters after retry and skip: %v, %v", open, err)
	}
	var all struct {
		DeadLetters []struct {
			EventID  string `json:"eventId"`
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
		} `json:"deadLetters"`
	}
	statuses := func() []string {
		var out []string
		for _, l := range all.DeadLetters {
			out = append(out, l.Status)
		}
		slices.Sort(out)
		return out
	}
	if code := sys.rest(t, http.MethodGet, "/v1/admin/dead-letters?include_resolved=true", "", &all); code != http.StatusOK ||
		!slices.Equal(statuses(), []string{"DEAD_LETTER_STATUS_RESOLVED", "DEAD_LETTER_STATUS_SKIPPED"}) {
		t.Fatalf("GET dead letters with resolved: %d %+v", code, all)
	}
	for _, l := range all.DeadLetters {
		if want := map[bool]int{true: 2, false: 1}[l.EventID == hopeLetter.EventId]; l.Attempts != want {
			t.Errorf("letter %s read back with %d attempts; want %d (each failed retry is recorded)", l.EventID, l.Attempts, want)
		}
	}
	if p := sys.processor(t, admin.SagaName); p.DeadLetters != 0 {
		t.Errorf("saga lists %d dead letters after retry and skip", p.DeadLetters)
	}

	// A restart replays neither: no new attempt is recorded.
	before := len(rawStream(t, sys, "saga-credit-dead-letters"))
	sys.stopSaga()
	again := startOn(t, sys.env, hosting{saga: true, views: sys.views})
	eventually(t, func() (bool, string) {
		p := again.processor(t, admin.SagaName)
		return p.State == orderlyv1.ProcessorState_PROCESSOR_STATE_CAUGHT_UP, fmt.Sprintf("restarted saga %v", p.State)
	})
	if after := len(rawStream(t, sys, "saga-credit-dead-letters")); after != before {
		t.Fatalf("the restarted saga wrote %d records to the dead-letter stream; closed letters need none", after-before)
	}
}

type rawRecord struct{ typ, data string }

func rawStream(t *testing.T, sys *system, stream string) []rawRecord {
	t.Helper()
	var out []rawRecord
	for _, r := range readRaw(t, sys, stream) {
		out = append(out, rawRecord{r.EventType, string(r.Data)})
	}
	return out
}

// TestRebuild: a rebuild started over gRPC is watched to its end over gRPC
// and REST, and the view it leaves holds what the live one did.
func TestRebuild(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true, saga: true})
	cust := sys.env.RegisterCustomer(t, 10_000)
	var orders []string
	for range 5 {
		orders = append(orders, sys.env.PlaceOrder(t, cust, 100))
	}
	waitPosition(t, sys, "orders", sys.env.Head(t))

	_, err := sys.admin.WatchRebuild(ctx(t), &orderlyv1.WatchRebuildRequest{View: "orders"})
	if err == nil {
		// A stream's status comes with its first Recv.
		stream, _ := sys.admin.WatchRebuild(ctx(t), &orderlyv1.WatchRebuildRequest{View: "orders"})
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.NotFound, "watch before any rebuild")

	started, err := sys.admin.StartRebuild(ctx(t), &orderlyv1.StartRebuildRequest{View: "orders"})
	if err != nil {
		t.Fatalf("StartRebuild: %v", err)
	}
	if started.Progress.View != "orders" || started.Progress.StartedAt == nil {
		t.Fatalf("started = %v", started.Progress)
	}
	stream, err := sys.admin.WatchRebuild(ctx(t), &orderlyv1.WatchRebuildRequest{View: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	var last *orderlyv1.RebuildProgress
	for {
		msg, err := stream.Recv()
		if err != nil {
			break
		}
		last = msg.Progress
	}
	if last == nil || !last.Done || last.Error != "" || last.Events == 0 {
		t.Fatalf("last progress %v; want done, having been through events", last)
	}
	for _, id := range orders {
		if _, err := sys.views.GetOrder(ctx(t), id); err != nil {
			t.Fatalf("rebuilt view lacks order %s: %v", id, err)
		}
	}
	st, err := sys.views.State(ctx(t), views.Orders)
	if err != nil || st.Live < 2 {
		t.Fatalf("orders state %+v, %v; want a new live version", st, err)
	}
	if p := sys.processor(t, "orders"); p.Rebuild == nil || !p.Rebuild.Done {
		t.Errorf("orders lists rebuild %v", p.Rebuild)
	}

	// REST: the same watch as NDJSON, of the finished rebuild.
	resp, err := commandtest.HTTPClient.Get(sys.restURL + "/v1/admin/views/orders:watchRebuild")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines int
	ndjson(t, resp.Body, func(line []byte) bool {
		var msg struct {
			Result struct {
				Progress struct {
					Done bool `json:"done"`
				} `json:"progress"`
			} `json:"result"`
		}
		if err := json.Unmarshal(line, &msg); err != nil || !msg.Result.Progress.Done {
			t.Errorf("REST watch line %s: %v", line, err)
		}
		lines++
		return true
	})
	if lines != 1 {
		t.Errorf("REST watch of a finished rebuild sent %d lines; want 1", lines)
	}
	var rebuilt struct {
		Progress struct {
			View string `json:"view"`
		} `json:"progress"`
	}
	if code := sys.rest(t, http.MethodPost, "/v1/admin/views/customers:rebuild", "{}", &rebuilt); code != http.StatusOK || rebuilt.Progress.View != "customers" {
		t.Fatalf("POST rebuild: %d %+v", code, rebuilt)
	}
}

// TestSplitDeployment: a process that runs only some processors lists the
// others as elsewhere and refuses calls about them, saying where it runs.
func TestSplitDeployment(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	sagaOnly := startOn(t, env, hosting{saga: true})
	projectorOnly := startOn(t, env, hosting{projector: true})

	for _, tc := range []struct {
		sys       *system
		here      string
		elsewhere []string
	}{
		{sagaOnly, admin.SagaName, []string{"orders", "customers"}},
		{projectorOnly, "orders", []string{admin.SagaName}},
	} {
		eventually(t, func() (bool, string) {
			p := tc.sys.processor(t, tc.here)
			return p.State == orderlyv1.ProcessorState_PROCESSOR_STATE_CAUGHT_UP, fmt.Sprintf("%s %v", tc.here, p.State)
		})
		for _, name := range tc.elsewhere {
			if p := tc.sys.processor(t, name); p.State != orderlyv1.ProcessorState_PROCESSOR_STATE_ELSEWHERE || p.Position != 0 {
				t.Errorf("%s listed by a process without it: %v", name, p)
			}
			_, err := tc.sys.admin.PauseProcessor(ctx(t), &orderlyv1.PauseProcessorRequest{Name: name})
			wantCode(t, err, codes.FailedPrecondition, "pause "+name+" elsewhere")
			if r := reason(err); r != admin.ReasonElsewhere || !strings.Contains(err.Error(), tc.here) {
				t.Errorf("pause %s elsewhere: %v (%s); want %s, naming %s", name, err, r, admin.ReasonElsewhere, tc.here)
			}
		}
	}
	_, err := sagaOnly.admin.StartRebuild(ctx(t), &orderlyv1.StartRebuildRequest{View: "orders"})
	wantCode(t, err, codes.FailedPrecondition, "rebuild without the projector")
	_, err = projectorOnly.admin.ListDeadLetters(ctx(t), &orderlyv1.ListDeadLettersRequest{})
	wantCode(t, err, codes.FailedPrecondition, "saga dead letters without the saga")
	var e restError
	if code := projectorOnly.rest(t, http.MethodPost, "/v1/admin/dead-letters:retry", `{"all":true}`, &e); code != http.StatusBadRequest && code != http.StatusPreconditionFailed {
		t.Errorf("REST retry without the saga: %d %+v", code, e)
	} else if e.reason() != admin.ReasonElsewhere {
		t.Errorf("REST retry without the saga: reason %q", e.reason())
	}
	// The projection's own dead letters are there, though.
	if _, err := projectorOnly.admin.ListDeadLetters(ctx(t), &orderlyv1.ListDeadLettersRequest{Processor: "orders"}); err != nil {
		t.Errorf("projection dead letters: %v", err)
	}
}

// TestInvalidArguments: every malformed request names its fields, over
// gRPC and REST (400).
func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true, saga: true})
	grpcCases := []struct {
		name   string
		call   func() error
		fields []string
	}{
		{"pause nothing", func() error {
			_, err := sys.admin.PauseProcessor(ctx(t), &orderlyv1.PauseProcessorRequest{})
			return err
		}, []string{"name"}},
		{"resume unknown", func() error {
			_, err := sys.admin.ResumeProcessor(ctx(t), &orderlyv1.ResumeProcessorRequest{Name: "payments"})
			return err
		}, []string{"name"}},
		{"list of unknown", func() error {
			_, err := sys.admin.ListDeadLetters(ctx(t), &orderlyv1.ListDeadLettersRequest{Processor: "x"})
			return err
		}, []string{"processor"}},
		{"retry both", func() error {
			_, err := sys.admin.RetryDeadLetter(ctx(t), &orderlyv1.RetryDeadLetterRequest{EventId: uuid.NewString(), All: true})
			return err
		}, []string{"event_id"}},
		{"retry neither", func() error {
			_, err := sys.admin.RetryDeadLetter(ctx(t), &orderlyv1.RetryDeadLetterRequest{})
			return err
		}, []string{"event_id"}},
		{"skip bad", func() error {
			_, err := sys.admin.SkipDeadLetter(ctx(t), &orderlyv1.SkipDeadLetterRequest{EventId: "nope"})
			return err
		}, []string{"event_id", "reason"}},
		{"rebuild of a saga", func() error {
			_, err := sys.admin.StartRebuild(ctx(t), &orderlyv1.StartRebuildRequest{View: admin.SagaName})
			return err
		}, []string{"view"}},
		{"watch nothing", func() error {
			stream, err := sys.admin.WatchRebuild(ctx(t), &orderlyv1.WatchRebuildRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		}, []string{"view"}},
	}
	for _, tc := range grpcCases {
		err := tc.call()
		wantCode(t, err, codes.InvalidArgument, tc.name)
		if got := violations(err); !slices.Equal(got, tc.fields) {
			t.Errorf("%s: violations %v; want %v", tc.name, got, tc.fields)
		}
	}
	restCases := []struct {
		method, path, body string
		fields             []string
	}{
		{http.MethodPost, "/v1/admin/processors/payments:pause", "{}", []string{"name"}},
		{http.MethodPost, "/v1/admin/dead-letters/nope:skip", `{"reason":"x"}`, []string{"event_id"}},
		{http.MethodPost, "/v1/admin/dead-letters/" + uuid.NewString() + ":skip", `{}`, []string{"reason"}},
		{http.MethodPost, "/v1/admin/dead-letters:retry", `{}`, []string{"event_id"}},
		{http.MethodPost, "/v1/admin/views/payments:rebuild", "{}", []string{"view"}},
		{http.MethodGet, "/v1/admin/dead-letters?processor=x", "", []string{"processor"}},
	}
	for _, tc := range restCases {
		var e restError
		if code := sys.rest(t, tc.method, tc.path, tc.body, &e); code != http.StatusBadRequest || !slices.Equal(e.fields(), tc.fields) {
			t.Errorf("%s %s: %d %+v; want 400 naming %v", tc.method, tc.path, code, e, tc.fields)
		}
	}
}

// TestReadEvents: a stream and $all are read newest first, in pages, with
// data and metadata as stored, over gRPC and REST.
func TestReadEvents(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{})
	stream := "browse-" + uuid.NewString()
	for i := range 3 {
		sys.appendRaw(t, stream, "test.Thing", 1, fmt.Sprintf(`{"n":%d}`, i))
	}
	page, err := sys.admin.ReadEvents(ctx(t), &orderlyv1.ReadEventsRequest{Stream: stream, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0].Revision != 2 || page.Events[1].Revision != 1 || page.Events[0].Data != `{"n":2}` ||
		page.Events[0].Metadata != `{"schema":1}` || page.NextBefore != 1 {
		t.Fatalf("first page %v", page)
	}
	page, err = sys.admin.ReadEvents(ctx(t), &orderlyv1.ReadEventsRequest{Stream: stream, Limit: 2, Before: page.NextBefore})
	if err != nil || len(page.Events) != 1 || page.Events[0].Revision != 0 || page.NextBefore != 0 {
		t.Fatalf("second page %v, %v", page, err)
	}
	all, err := sys.admin.ReadEvents(ctx(t), &orderlyv1.ReadEventsRequest{Limit: 2})
	if err != nil || len(all.Events) != 2 || all.Events[0].Position <= all.Events[1].Position || all.NextBefore == 0 {
		t.Fatalf("$all page %v, %v", all, err)
	}
	older, err := sys.admin.ReadEvents(ctx(t), &orderlyv1.ReadEventsRequest{Stream: "$all", Limit: 100, Before: all.NextBefore})
	if err != nil || len(older.Events) == 0 || older.Events[0].Position >= all.Events[1].Position {
		t.Fatalf("older $all page %v, %v", older, err)
	}
	var rest struct {
		Events []struct {
			Type string `json:"type"`
			Data string `json:"data"`
		} `json:"events"`
	}
	if code := sys.rest(t, http.MethodGet, "/v1/admin/events?stream="+stream+"&limit=1", "", &rest); code != http.StatusOK || len(rest.Events) != 1 || rest.Events[0].Data != `{"n":2}` {
		t.Fatalf("GET events: %d %+v", code, rest)
	}
	var e restError
	if code := sys.rest(t, http.MethodGet, "/v1/admin/events?limit=101", "", &e); code != http.StatusBadRequest || !slices.Equal(e.fields(), []string{"limit"}) {
		t.Errorf("GET events limit=101: %d %+v", code, e)
	}
	_, err = sys.admin.ReadEvents(ctx(t), &orderlyv1.ReadEventsRequest{Stream: "nothing-" + uuid.NewString()})
	wantCode(t, err, codes.NotFound, "read of a missing stream")
}

// TestFailingProcessor: a view store that fails every write shows as
// FAILING with its error; the projector keeps retrying.
func TestFailingProcessor(t *testing.T) {
	t.Parallel()
	sys := start(t, hosting{projector: true})
	eventually(t, func() (bool, string) {
		p := sys.processor(t, "orders")
		return p.State == orderlyv1.ProcessorState_PROCESSOR_STATE_CAUGHT_UP, fmt.Sprintf("orders %v", p.State)
	})
	if err := sys.views.Close(); err != nil {
		t.Fatal(err)
	}
	sys.env.RegisterCustomer(t, 10_000)
	eventually(t, func() (bool, string) {
		p := sys.processor(t, "customers")
		return p.State == orderlyv1.ProcessorState_PROCESSOR_STATE_FAILING && p.LastError != "" && p.LastErrorAt != nil,
			fmt.Sprintf("customers %v, last error %q", p.State, p.LastError)
	})
}
