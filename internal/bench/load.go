package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
)

// Amounts, in US cents. An order within limits totals at most 30,000 against
// limits of at least 5,000,000, so it is approved unless the customer's
// credit is spent; an order over the limit (10,000 × 100,000) exceeds any
// limit the bench sets, so it is always rejected.
const (
	currency      = "USD"
	minLimit      = 5_000_000
	maxLimit      = 20_000_000
	overQuantity  = 10_000
	overUnitPrice = 100_000
	lineSets      = 64
	// cancelRing is how many of a client's recent orders it may cancel.
	cancelRing = 256
	// visiblePool bounds the orders known to be in the views, for reads.
	visiblePool = 4096
)

// payloads are built once and shared read-only by every client.
type payloads struct {
	within [lineSets][]*orderlyv1.OrderLine
	over   []*orderlyv1.OrderLine
}

func newPayloads(r *rand.Rand) *payloads {
	p := &payloads{over: []*orderlyv1.OrderLine{{Sku: "BENCH-BIG", Quantity: overQuantity, UnitPrice: usd(overUnitPrice)}}}
	for i := range p.within {
		n := 1 + r.IntN(3)
		for range n {
			p.within[i] = append(p.within[i], &orderlyv1.OrderLine{
				Sku:       fmt.Sprintf("SKU-%04d", r.IntN(1000)),
				Quantity:  int32(1 + r.IntN(5)),
				UnitPrice: usd(int64(100 + r.IntN(1901))),
			})
		}
	}
	return p
}

func usd(minor int64) *orderlyv1.Money {
	return &orderlyv1.Money{CurrencyCode: currency, MinorUnits: minor}
}

// placed is an acknowledged order, for the decision and visibility samples.
type placed struct {
	orderID  string
	position uint64
	acked    time.Time
}

// client is one of the -clients senders. Its requests are reused from call
// to call: a gRPC call has marshalled its request when it returns.
type client struct {
	b       *run
	id      int
	r       *rand.Rand
	seq     uint64
	idBuf   []byte
	cancels ring

	register orderlyv1.RegisterCustomerRequest
	place    orderlyv1.PlaceOrderRequest
	cancel   orderlyv1.CancelOrderRequest
	limit    orderlyv1.ChangeCreditLimitRequest
	get      orderlyv1.GetOrderRequest
	list     orderlyv1.ListOrdersRequest
}

func newClient(b *run, id int) *client {
	c := &client{b: b, id: id, r: rand.New(rand.NewPCG(b.cfg.Seed, uint64(id)+1))}
	c.idBuf = append(c.idBuf, b.runID...)
	c.idBuf = append(c.idBuf, '-')
	c.idBuf = strconv.AppendInt(c.idBuf, int64(id), 10)
	c.idBuf = append(c.idBuf, '-')
	c.cancel.Reason = "bench"
	c.list.PageSize = 20
	return c
}

// commandID is unique to this run, client and call.
func (c *client) commandID() string {
	c.seq++
	return string(strconv.AppendUint(c.idBuf, c.seq, 10))
}

// loop sends operations as the schedule says until it ends or ctx does.
func (c *client) loop(ctx context.Context, s *schedule) {
	timer := time.NewTimer(0)
	<-timer.C
	for ctx.Err() == nil {
		due, ok := s.take(time.Now())
		if !ok {
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		if s.interval > 0 {
			c.b.stats.late.Record(time.Since(due))
		}
		o := c.b.cfg.mix.draw(c.r)
		err := c.do(ctx, o)
		switch {
		case ctx.Err() != nil: // cut by the stop: neither an answer nor an error
		case err == errNothingToDo:
			c.b.stats.skipped[o].Add(1)
		case err != nil:
			if c.b.stats.fail(o.String(), err) {
				c.b.stats.latency[o].Record(time.Since(due))
			}
		default:
			c.b.stats.ok[o].Add(1)
			c.b.stats.latency[o].Record(time.Since(due))
		}
	}
}

var errNothingToDo = fmt.Errorf("nothing to act on yet")

func (c *client) do(ctx context.Context, o op) error {
	b := c.b
	ctx, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
	defer cancel()
	switch o {
	case opRegister:
		return c.registerOne(ctx)
	case opPlace, opPlaceOver:
		return c.placeOne(ctx, o == opPlaceOver)
	case opCancel:
		id, ok := c.cancels.pop()
		if !ok {
			return errNothingToDo
		}
		c.cancel.CommandId, c.cancel.OrderId = c.commandID(), id
		_, err := b.commands.CancelOrder(ctx, &c.cancel)
		return err
	case opCreditLimit:
		cust, _ := b.customers.pick(c.r)
		c.limit.CommandId, c.limit.CustomerId = c.commandID(), cust
		c.limit.CreditLimit = usd(minLimit + c.r.Int64N(maxLimit-minLimit+1))
		_, err := b.commands.ChangeCreditLimit(ctx, &c.limit)
		return err
	case opGetOrder:
		id, ok := b.visible.pick(c.r)
		if !ok {
			return errNothingToDo
		}
		c.get.OrderId = id
		_, err := b.queries.GetOrder(ctx, &c.get)
		return err
	case opListOrders:
		c.list.CustomerId, _ = b.customers.pick(c.r)
		_, err := b.queries.ListOrders(ctx, &c.list)
		return err
	case opGetOrderREST:
		id, ok := b.visible.pick(c.r)
		if !ok {
			return errNothingToDo
		}
		return b.getREST(ctx, id)
	}
	panic("unknown operation " + o.String())
}

func (c *client) registerOne(ctx context.Context) error {
	c.register.CommandId = c.commandID()
	c.register.Name = "Bench " + c.register.CommandId
	c.register.Email = c.register.CommandId + "@bench.example.com"
	c.register.CreditLimit = usd(minLimit + c.r.Int64N(maxLimit-minLimit+1))
	resp, err := c.b.commands.RegisterCustomer(ctx, &c.register)
	if err != nil {
		return err
	}
	c.b.customers.add(resp.GetCustomerId())
	return nil
}

func (c *client) placeOne(ctx context.Context, over bool) error {
	b := c.b
	cust, _ := b.customers.pick(c.r)
	c.place.CommandId, c.place.CustomerId = c.commandID(), cust
	c.place.Lines = b.payloads.over
	if !over {
		c.place.Lines = b.payloads.within[c.r.IntN(lineSets)]
	}
	resp, err := b.commands.PlaceOrder(ctx, &c.place)
	if err != nil {
		return err
	}
	p := placed{orderID: resp.GetOrderId(), position: resp.GetPosition(), acked: time.Now()}
	for last := b.lastPlaced.Load(); p.position > last && !b.lastPlaced.CompareAndSwap(last, p.position); {
		last = b.lastPlaced.Load()
	}
	if !over {
		c.cancels.push(p.orderID)
	}
	if c.r.Float64() < b.cfg.DecisionSample {
		b.sample(b.watch, p, &b.stats.undecided)
	}
	if c.r.Float64() < b.cfg.VisibleSample {
		b.sample(b.probe, p, &b.stats.invisible)
	}
	return nil
}

// getREST reads an order through the REST gateway, as a browser would.
func (b *run) getREST(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.restOrders+id, nil)
	if err != nil {
		return err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err = restError(resp.StatusCode, resp.Body)
	}
	// Reading the body to its end lets the connection be reused.
	if _, cerr := io.Copy(io.Discard, resp.Body); err == nil {
		err = cerr
	}
	return err
}

// ring is a client's recent orders, oldest first, for cancels.
type ring struct {
	ids        [cancelRing]string
	head, size int
}

func (r *ring) push(id string) {
	r.ids[(r.head+r.size)%cancelRing] = id
	if r.size < cancelRing {
		r.size++
	} else {
		r.head = (r.head + 1) % cancelRing
	}
}

func (r *ring) pop() (string, bool) {
	if r.size == 0 {
		return "", false
	}
	id := r.ids[r.head]
	r.head, r.size = (r.head+1)%cancelRing, r.size-1
	return id, true
}
