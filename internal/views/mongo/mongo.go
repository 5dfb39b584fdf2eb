// Package mongo keeps the views in MongoDB through the official driver: the
// store of record in production. It stays within what FerretDB v1 implements
// (the server its tests run against): bulk writes in small chunks, no
// transactions, no collection renames, no aggregation beyond one $group
// accumulator, every cursor closed.
//
// Each version of a view is a collection (orders_v3, and orders_v3_dead_letters
// beside it); the version pointer and checkpoints are one document per view
// in views_state. With no transactions, atomicity comes from single-document
// updates on that pointer: a checkpoint is saved only if its version is still
// live or building, and a switch is a compare-and-set of the whole pointer.
// Readers read the pointer before and after their query and retry if it
// moved, so none returns a version dropped under it. The leases, and the
// per-partition checkpoints fenced batches write into them, are in lease.go.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/stored"
)

// Config configures Open.
type Config struct {
	// URI is the MongoDB connection string.
	URI string
	// Database holds the views; default "orderly".
	Database string
	// BulkSize bounds the writes of one BulkWrite; default 1000. FerretDB
	// hangs on bulk updates of more than ~99 documents: use at most 64
	// toward it.
	BulkSize int
}

// Store is a views.Store on a MongoDB database.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	state  *mongo.Collection
	bulk   int
	// leaseWrites orders this process's writes to lease documents. MongoDB
	// needs none: it applies each filtered update atomically. FerretDB,
	// which the tests run against, reads the matching document and writes
	// it back whole, so two writers of one document at once — the views'
	// two lanes raising their checkpoints in the same partitions, a renewal
	// beside a batch — could each undo the other's write. Within one
	// process these are the only concurrent writers of a lease; across
	// processes only a takeover writes another's, and claims are ordered
	// by their tokens (see claim).
	leaseWrites sync.Mutex
}

var _ views.Store = (*Store)(nil)

const stateCollection = "views_state"

// Open connects to cfg.URI and makes sure every view has a live version.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.BulkSize == 0 {
		cfg.BulkSize = 1000
	}
	if cfg.BulkSize < 0 {
		return nil, fmt.Errorf("mongo views: bulk size %d must be positive", cfg.BulkSize)
	}
	client, db, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{client: client, db: db, state: db.Collection(stateCollection), bulk: cfg.BulkSize}
	if err := s.init(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("mongo views: %w", err)
	}
	return s, nil
}

func connect(cfg Config) (*mongo.Client, *mongo.Database, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.URI).SetAppName("orderly-views"))
	if err != nil {
		return nil, nil, fmt.Errorf("mongo views: connect: %w", err)
	}
	name := cfg.Database
	if name == "" {
		name = "orderly"
	}
	return client, client.Database(name), nil
}

// HasViews reports whether cfg's database holds views (their state
// collection), creating nothing.
func HasViews(ctx context.Context, cfg Config) (bool, error) {
	client, db, err := connect(cfg)
	if err != nil {
		return false, err
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	names, err := db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: stateCollection}})
	if err != nil {
		return false, fmt.Errorf("mongo views: list collections of %s: %w", db.Name(), err)
	}
	return len(names) > 0, nil
}

// Close disconnects.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}

// stateDoc is a view's version pointer and checkpoints.
type stateDoc struct {
	View               string `bson:"_id"`
	Live               int64  `bson:"live"`
	LiveCheckpoint     int64  `bson:"live_checkpoint"`
	Building           int64  `bson:"building"`
	BuildingCheckpoint int64  `bson:"building_checkpoint"`
	// Paused is not part of match: a pause moves no pointer, and must not
	// fail a concurrent checkpoint's compare-and-set.
	Paused bool `bson:"paused,omitempty"`
}

func (d stateDoc) state() views.State {
	return views.State{
		Live: views.Version(d.Live), LiveCheckpoint: uint64(d.LiveCheckpoint),
		Building: views.Version(d.Building), BuildingCheckpoint: uint64(d.BuildingCheckpoint),
		Paused: d.Paused,
	}
}

// match selects the pointer exactly as d read it: the compare of a
// compare-and-set.
func (d stateDoc) match() bson.D {
	return bson.D{
		{Key: "_id", Value: d.View}, {Key: "live", Value: d.Live}, {Key: "live_checkpoint", Value: d.LiveCheckpoint},
		{Key: "building", Value: d.Building}, {Key: "building_checkpoint", Value: d.BuildingCheckpoint},
	}
}

func (s *Store) init(ctx context.Context) error {
	if err := s.initClock(ctx); err != nil {
		return err
	}
	for _, v := range views.All() {
		// $setOnInsert makes this a no-op on an existing pointer, and two
		// processes starting at once cannot both insert one.
		_, err := s.state.UpdateOne(ctx, bson.D{{Key: "_id", Value: string(v)}},
			bson.D{{Key: "$setOnInsert", Value: bson.D{
				{Key: "live", Value: int64(1)}, {Key: "live_checkpoint", Value: int64(0)},
				{Key: "building", Value: int64(0)}, {Key: "building_checkpoint", Value: int64(0)},
			}}}, options.UpdateOne().SetUpsert(true))
		if err != nil {
			return fmt.Errorf("init state of %s: %w", v, err)
		}
		st, err := s.readState(ctx, v)
		if err != nil {
			return err
		}
		// Creating indexes is idempotent; this also creates the collections.
		if err := s.createVersion(ctx, views.Target{View: v, Version: views.Version(st.Live)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) readState(ctx context.Context, v views.View) (stateDoc, error) {
	var d stateDoc
	if err := s.state.FindOne(ctx, bson.D{{Key: "_id", Value: string(v)}}).Decode(&d); err != nil {
		return d, fmt.Errorf("state of view %s: %w", v, err)
	}
	return d, nil
}

// readStates reads every view's pointer in one query.
func (s *Store) readStates(ctx context.Context) (map[views.View]stateDoc, error) {
	cur, err := s.state.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("views state: %w", err)
	}
	var docs []stateDoc
	if err := cur.All(ctx, &docs); err != nil { // All closes the cursor
		return nil, fmt.Errorf("views state: %w", err)
	}
	out := make(map[views.View]stateDoc, len(docs))
	for _, d := range docs {
		out[views.View(d.View)] = d
	}
	for _, v := range views.All() {
		if _, ok := out[v]; !ok {
			return nil, fmt.Errorf("views state: no pointer for %s", v)
		}
	}
	return out, nil
}

func (s *Store) coll(t views.Target) *mongo.Collection {
	return s.db.Collection(stored.Table(t.View, t.Version))
}

func (s *Store) deadLetters(t views.Target) *mongo.Collection {
	return s.db.Collection(stored.Table(t.View, t.Version) + stored.DeadLetterSuffix)
}

func index(keys ...string) mongo.IndexModel {
	d := bson.D{}
	for _, k := range keys {
		dir := 1
		if k[0] == '-' {
			k, dir = k[1:], -1
		}
		d = append(d, bson.E{Key: k, Value: dir})
	}
	return mongo.IndexModel{Keys: d}
}

func (s *Store) createVersion(ctx context.Context, t views.Target) error {
	var models []mongo.IndexModel
	switch t.View {
	case views.Orders:
		// One index per filter ListOrders offers, each ending in the sort
		// keys (real MongoDB uses them; FerretDB scans regardless).
		models = []mongo.IndexModel{
			index("customer_id", "status", "-created_ns", "-_id"),
			index("customer_id", "-created_ns", "-_id"),
			index("status", "-created_ns", "-_id"),
			index("-created_ns", "-_id"),
		}
	case views.Customers:
		unique := index("registered_position")
		unique.Options = options.Index().SetUnique(true)
		models = []mongo.IndexModel{unique}
	default:
		return fmt.Errorf("unknown view %q", t.View)
	}
	// One index per command: FerretDB v1.24 panics on a createIndexes of
	// several indexes that already exist, which every reopen sends.
	for _, m := range models {
		if _, err := s.coll(t).Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("create %s: %w", stored.Table(t.View, t.Version), err)
		}
	}
	if _, err := s.deadLetters(t).Indexes().CreateOne(ctx, index("position")); err != nil {
		return fmt.Errorf("create %s dead letters: %w", stored.Table(t.View, t.Version), err)
	}
	return nil
}

// dropBelow drops every collection of view v older than version keep
// except live. Only older ones: a newer one may be a concurrent rebuild's,
// created just before it sets the pointer.
func (s *Store) dropBelow(ctx context.Context, v views.View, keep, live views.Version) error {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("list collections: %w", err)
	}
	for _, name := range names {
		if ver, ok := stored.ParseTable(v, name); ok && ver < keep && ver != live {
			if err := s.db.Collection(name).Drop(ctx); err != nil {
				return fmt.Errorf("drop %s: %w", name, err)
			}
		}
	}
	return nil
}

// State implements views.Reader.
func (s *Store) State(ctx context.Context, v views.View) (views.State, error) {
	d, err := s.readState(ctx, v)
	if err != nil {
		return views.State{}, err
	}
	docs, err := s.projectorLeases(ctx)
	return partitioned(d, docs), err
}

// Checkpoint implements views.Reader.
func (s *Store) Checkpoint(ctx context.Context) (uint64, error) {
	states, err := s.readStates(ctx)
	if err != nil {
		return 0, err
	}
	docs, err := s.projectorLeases(ctx)
	if err != nil {
		return 0, err
	}
	low := uint64(0)
	for i, v := range views.All() {
		if cp := partitioned(states[v], docs).LiveCheckpoint; i == 0 || cp < low {
			low = cp
		}
	}
	return low, nil
}

// BeginRebuild implements views.Writer.
func (s *Store) BeginRebuild(ctx context.Context, v views.View) (views.Target, error) {
	for {
		st, err := s.readState(ctx, v)
		if err != nil {
			return views.Target{}, fmt.Errorf("begin rebuild of %s: %w", v, err)
		}
		t := views.Target{View: v, Version: views.Version(max(st.Live, st.Building) + 1)}
		// Collections first, pointer second: a crash in between leaves only
		// unreferenced collections, which the next rebuild drops.
		if err := s.createVersion(ctx, t); err != nil {
			return views.Target{}, fmt.Errorf("begin rebuild of %s: %w", v, err)
		}
		res, err := s.state.UpdateOne(ctx, st.match(), bson.D{{Key: "$set", Value: bson.D{
			{Key: "building", Value: int64(t.Version)}, {Key: "building_checkpoint", Value: int64(0)},
		}}})
		if err != nil {
			return views.Target{}, fmt.Errorf("begin rebuild of %s: %w", v, err)
		}
		if res.MatchedCount == 0 {
			continue // the pointer moved (a checkpoint was saved): read it again
		}
		if err := s.dropBelow(ctx, v, t.Version, views.Version(st.Live)); err != nil {
			return views.Target{}, fmt.Errorf("begin rebuild of %s: %w", v, err)
		}
		return t, nil
	}
}

// Switch implements views.Writer.
func (s *Store) Switch(ctx context.Context, t views.Target, liveAhead bool) error {
	for {
		st, err := s.readState(ctx, t.View)
		if err != nil {
			return fmt.Errorf("switch %s to version %d: %w", t.View, t.Version, err)
		}
		if views.Version(st.Building) != t.Version {
			return fmt.Errorf("switch %s to version %d: building version is %d: %w", t.View, t.Version, st.Building, views.ErrStale)
		}
		docs, err := s.projectorLeases(ctx)
		if err != nil {
			return fmt.Errorf("switch %s to version %d: %w", t.View, t.Version, err)
		}
		// The partitions are not in the compare-and-set below: a fenced
		// batch landing between this read and the switch raises a
		// partition of the old version past the shadow, which then goes
		// live a little behind what that batch made visible.
		if low := partitioned(st, docs).LiveCheckpoint; st.BuildingCheckpoint < int64(low) && !liveAhead {
			return fmt.Errorf("switch %s to version %d: shadow at %d, live at %d: %w",
				t.View, t.Version, st.BuildingCheckpoint, low, views.ErrBehind)
		}
		res, err := s.state.UpdateOne(ctx, st.match(), bson.D{{Key: "$set", Value: bson.D{
			{Key: "live", Value: st.Building}, {Key: "live_checkpoint", Value: st.BuildingCheckpoint},
			{Key: "building", Value: int64(0)}, {Key: "building_checkpoint", Value: int64(0)},
		}}})
		if err != nil {
			return fmt.Errorf("switch %s to version %d: %w", t.View, t.Version, err)
		}
		if res.MatchedCount == 0 {
			continue // a checkpoint moved since the read: compare again
		}
		if err := s.dropPartitions(ctx, views.Target{View: t.View, Version: views.Version(st.Live)}); err != nil {
			return fmt.Errorf("switch %s to version %d: %w", t.View, t.Version, err)
		}
		return s.dropBelow(ctx, t.View, t.Version, t.Version)
	}
}

// Apply implements views.Writer.
func (s *Store) Apply(ctx context.Context, t views.Target, b views.Batch) error {
	if err := b.Check(t.View); err != nil {
		return err
	}
	if err := s.apply(ctx, t, b); err != nil {
		return fmt.Errorf("apply batch to %s v%d: %w", t.View, t.Version, err)
	}
	return nil
}

func (s *Store) apply(ctx context.Context, t views.Target, b views.Batch) error {
	st, err := s.readState(ctx, t.View)
	if err != nil {
		return err
	}
	field, err := checkpointField(st, t)
	if err != nil {
		return err
	}
	if b.Fence != nil && field != "live" {
		return fmt.Errorf("a fenced batch for version %d, which is not live", t.Version)
	}
	switch t.View {
	case views.Orders:
		recs := make([]stored.Order, len(b.Orders))
		for i, d := range b.Orders {
			recs[i] = stored.FromOrder(d)
		}
		err = guardedUpsert(ctx, s, t, recs, func(r stored.Order) (string, int64) { return r.OrderID, r.Revision })
	case views.Customers:
		recs := make([]stored.Customer, len(b.Customers))
		for i, d := range b.Customers {
			recs[i] = stored.FromCustomer(d)
		}
		err = guardedUpsert(ctx, s, t, recs, func(r stored.Customer) (string, int64) { return r.CustomerID, r.Revision })
	}
	if err != nil {
		return err
	}
	if err := s.putDeadLetters(ctx, t, b.DeadLetters); err != nil {
		return err
	}
	if b.Fence != nil {
		return s.applyFenced(ctx, t, b)
	}
	res, err := s.state.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: string(t.View)}, {Key: field, Value: int64(t.Version)}},
		bson.D{{Key: "$max", Value: bson.D{{Key: field + "_checkpoint", Value: int64(b.Checkpoint)}}}})
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if res.MatchedCount == 0 {
		return s.stale(ctx, t)
	}
	return nil
}

// applyFenced saves a fenced batch's checkpoints. The lease documents do not
// know the live version, so whether t still is live is read after the write.
func (s *Store) applyFenced(ctx context.Context, t views.Target, b views.Batch) error {
	if err := s.fencedCheckpoint(ctx, t, b); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	st, err := s.readState(ctx, t.View)
	if err != nil || views.Version(st.Live) == t.Version {
		return err
	}
	return errors.Join(s.dropPartitions(ctx, t), s.stale(ctx, t))
}

// stale reports that t was switched away or abandoned while a batch was
// written. It may have been dropped before the documents were: whatever the
// batch recreated is garbage.
func (s *Store) stale(ctx context.Context, t views.Target) error {
	if st, err := s.readState(ctx, t.View); err == nil && views.Version(st.Live) != t.Version && views.Version(st.Building) != t.Version {
		_ = s.coll(t).Drop(ctx)
		_ = s.deadLetters(t).Drop(ctx)
	}
	return fmt.Errorf("save checkpoint: %w", views.ErrStale)
}

// checkpointField names the pointer field that holds t's version.
func checkpointField(st stateDoc, t views.Target) (string, error) {
	switch t.Version {
	case views.Version(st.Live):
		return "live", nil
	case views.Version(st.Building):
		return "building", nil
	}
	return "", fmt.Errorf("%s version %d (live %d, building %d): %w", t.View, t.Version, st.Live, st.Building, views.ErrStale)
}

// guardedUpsert replaces each record whose stored revision is lower, or
// inserts it. A record whose stored revision is not lower matches no
// document, so its upsert attempts an insert and fails on the _id index.
// Such failures are the guard refusing, but they are checked, not assumed
// (MongoDB reports a duplicate key, FerretDB a generic error, and FerretDB
// also skips the rest of an unordered bulk after one): on any write error
// the stored revisions are read back, and the records still newer than what
// is stored are written again, until none is left or a round makes no
// progress.
func guardedUpsert[R any](ctx context.Context, s *Store, t views.Target, recs []R, key func(R) (string, int64)) error {
	coll := s.coll(t)
	for start := 0; start < len(recs); start += s.bulk {
		pending := recs[start:min(start+s.bulk, len(recs))]
		for len(pending) > 0 {
			models := make([]mongo.WriteModel, len(pending))
			for i, r := range pending {
				id, rev := key(r)
				models[i] = mongo.NewReplaceOneModel().
					SetFilter(bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: bson.D{{Key: "$lt", Value: rev}}}}).
					SetReplacement(r).SetUpsert(true)
			}
			_, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
			var bwe mongo.BulkWriteException
			if err == nil {
				break
			}
			if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
				return fmt.Errorf("write %s: %w", coll.Name(), err)
			}
			ids := make([]string, len(pending))
			for i, r := range pending {
				ids[i], _ = key(r)
			}
			have, rerr := s.revisions(ctx, coll, ids)
			if rerr != nil {
				return rerr
			}
			var left []R
			for _, r := range pending {
				id, rev := key(r)
				if got, ok := have[id]; !ok || got < rev {
					left = append(left, r)
				}
			}
			if len(left) == len(pending) {
				return fmt.Errorf("write %s: %w", coll.Name(), err)
			}
			pending = left
		}
	}
	return nil
}

// revisions returns the stored revision of each of ids that exists.
func (s *Store) revisions(ctx context.Context, coll *mongo.Collection, ids []string) (map[string]int64, error) {
	out := map[string]int64{}
	err := findByIDs(ctx, coll, ids, options.Find().SetProjection(bson.D{{Key: "revision", Value: 1}}), func(cur *mongo.Cursor) error {
		var r struct {
			ID       string `bson:"_id"`
			Revision int64  `bson:"revision"`
		}
		if err := cur.Decode(&r); err != nil {
			return err
		}
		out[r.ID] = r.Revision
		return nil
	})
	return out, err
}

func (s *Store) putDeadLetters(ctx context.Context, t views.Target, letters []views.DeadLetter) error {
	coll := s.deadLetters(t)
	for start := 0; start < len(letters); start += s.bulk {
		chunk := letters[start:min(start+s.bulk, len(letters))]
		models := make([]mongo.WriteModel, len(chunk))
		for i, l := range chunk {
			rec := stored.FromDeadLetter(l)
			models[i] = mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: rec.EventID}}).SetReplacement(rec).SetUpsert(true)
		}
		if _, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return fmt.Errorf("write %s: %w", coll.Name(), err)
		}
	}
	return nil
}

// idsPerQuery bounds the IDs of one $in lookup.
const idsPerQuery = 500

// findByIDs calls fn on each document of coll among ids.
func findByIDs(ctx context.Context, coll *mongo.Collection, ids []string, opts *options.FindOptionsBuilder, fn func(*mongo.Cursor) error) error {
	for start := 0; start < len(ids); start += idsPerQuery {
		chunk := ids[start:min(start+idsPerQuery, len(ids))]
		if err := each(ctx, coll, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: chunk}}}}, opts, fn); err != nil {
			return err
		}
	}
	return nil
}

// each runs a find and calls fn on every document; the cursor is always
// closed (FerretDB holds a connection per open cursor).
func each(ctx context.Context, coll *mongo.Collection, filter any, opts *options.FindOptionsBuilder, fn func(*mongo.Cursor) error) error {
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return fmt.Errorf("find in %s: %w", coll.Name(), err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		if err := fn(cur); err != nil {
			return fmt.Errorf("read %s: %w", coll.Name(), err)
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read %s: %w", coll.Name(), err)
	}
	return nil
}

// checkWritable returns ErrStale unless t is live or building.
func (s *Store) checkWritable(ctx context.Context, t views.Target) error {
	st, err := s.readState(ctx, t.View)
	if err != nil {
		return err
	}
	_, err = checkpointField(st, t)
	return err
}

// LoadOrders implements views.Writer.
func (s *Store) LoadOrders(ctx context.Context, t views.Target, ids []string) (map[string]views.OrderDoc, error) {
	out := make(map[string]views.OrderDoc, len(ids))
	err := s.checkWritable(ctx, t)
	if err == nil {
		err = findByIDs(ctx, s.coll(t), ids, options.Find(), func(cur *mongo.Cursor) error {
			var rec stored.Order
			err := cur.Decode(&rec)
			out[rec.OrderID] = rec.Doc()
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("load orders from v%d: %w", t.Version, err)
	}
	return out, nil
}

// LoadCustomers implements views.Writer.
func (s *Store) LoadCustomers(ctx context.Context, t views.Target, ids []string) (map[string]views.CustomerDoc, error) {
	out := make(map[string]views.CustomerDoc, len(ids))
	err := s.checkWritable(ctx, t)
	if err == nil {
		err = findByIDs(ctx, s.coll(t), ids, options.Find(), func(cur *mongo.Cursor) error {
			var rec stored.Customer
			err := cur.Decode(&rec)
			out[rec.CustomerID] = rec.Doc()
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("load customers from v%d: %w", t.Version, err)
	}
	return out, nil
}

// readAttempts bounds how often a read retries because a switch moved the
// pointer under it; a switch takes a rebuild, so two in a row are rare.
const readAttempts = 5

// readLive runs read against the live versions, retrying if the pointer of
// a view moved while it ran (the version read may have been dropped midway).
func (s *Store) readLive(ctx context.Context, read func(live map[views.View]views.Target) error) error {
	for range readAttempts {
		before, err := s.readStates(ctx)
		if err != nil {
			return err
		}
		live := make(map[views.View]views.Target, len(before))
		for v, d := range before {
			live[v] = views.Target{View: v, Version: views.Version(d.Live)}
		}
		readErr := read(live)
		after, err := s.readStates(ctx)
		if err != nil {
			return err
		}
		moved := false
		for v, d := range after {
			moved = moved || d.Live != before[v].Live
		}
		if !moved {
			return readErr
		}
	}
	return fmt.Errorf("views switched %d times during one read", readAttempts)
}

// GetOrder implements views.Reader.
func (s *Store) GetOrder(ctx context.Context, orderID string) (views.OrderDoc, error) {
	var rec stored.Order
	err := s.readLive(ctx, func(live map[views.View]views.Target) error {
		return s.coll(live[views.Orders]).FindOne(ctx, bson.D{{Key: "_id", Value: orderID}}).Decode(&rec)
	})
	if errors.Is(err, mongo.ErrNoDocuments) {
		return views.OrderDoc{}, fmt.Errorf("order %s: %w", orderID, views.ErrNotFound)
	}
	if err != nil {
		return views.OrderDoc{}, fmt.Errorf("get order %s: %w", orderID, err)
	}
	return rec.Doc(), nil
}

// ListOrders implements views.Reader.
func (s *Store) ListOrders(ctx context.Context, q views.OrderQuery) ([]views.OrderDoc, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list orders: limit %d must be positive", q.Limit)
	}
	filter := bson.D{}
	if q.CustomerID != "" {
		filter = append(filter, bson.E{Key: "customer_id", Value: q.CustomerID})
	}
	if q.Status != domain.StatusNone {
		filter = append(filter, bson.E{Key: "status", Value: int32(q.Status)})
	}
	if q.After != nil {
		ns := stored.Nanos(q.After.CreatedAt)
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_ns", Value: bson.D{{Key: "$lt", Value: ns}}}},
			bson.D{{Key: "created_ns", Value: ns}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: q.After.OrderID}}}},
		}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "created_ns", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(q.Limit))
	var out []views.OrderDoc
	err := s.readLive(ctx, func(live map[views.View]views.Target) error {
		out = make([]views.OrderDoc, 0, q.Limit)
		return each(ctx, s.coll(live[views.Orders]), filter, opts, func(cur *mongo.Cursor) error {
			var rec stored.Order
			err := cur.Decode(&rec)
			out = append(out, rec.Doc())
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return out, nil
}

// GetCustomer implements views.Reader.
func (s *Store) GetCustomer(ctx context.Context, customerID string) (views.CustomerDoc, error) {
	docs, err := s.customers(ctx, bson.D{{Key: "_id", Value: customerID}}, options.Find())
	if err != nil {
		return views.CustomerDoc{}, fmt.Errorf("get customer %s: %w", customerID, err)
	}
	if len(docs) == 0 {
		return views.CustomerDoc{}, fmt.Errorf("customer %s: %w", customerID, views.ErrNotFound)
	}
	return docs[0], nil
}

// ListCustomers implements views.Reader.
func (s *Store) ListCustomers(ctx context.Context, q views.CustomerQuery) ([]views.CustomerDoc, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list customers: limit %d must be positive", q.Limit)
	}
	docs, err := s.customers(ctx,
		bson.D{{Key: "registered_position", Value: bson.D{{Key: "$gt", Value: int64(q.After)}}}},
		options.Find().SetSort(bson.D{{Key: "registered_position", Value: 1}}).SetLimit(int64(q.Limit)))
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return docs, nil
}

// customers finds customers and counts their orders, both in the live
// versions of one pointer read.
func (s *Store) customers(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder) ([]views.CustomerDoc, error) {
	var out []views.CustomerDoc
	err := s.readLive(ctx, func(live map[views.View]views.Target) error {
		out = nil
		index := map[string]int{}
		err := each(ctx, s.coll(live[views.Customers]), filter, opts, func(cur *mongo.Cursor) error {
			var rec stored.Customer
			err := cur.Decode(&rec)
			index[rec.CustomerID] = len(out)
			out = append(out, rec.Doc())
			return err
		})
		if err != nil || len(out) == 0 {
			return err
		}
		ids := make([]string, len(out))
		for i, d := range out {
			ids[i] = d.CustomerID
		}
		// One accumulator only: FerretDB computes just the first of several.
		cur, err := s.coll(live[views.Orders]).Aggregate(ctx, mongo.Pipeline{
			{{Key: "$match", Value: bson.D{{Key: "customer_id", Value: bson.D{{Key: "$in", Value: ids}}}}}},
			{{Key: "$group", Value: bson.D{
				{Key: "_id", Value: bson.D{{Key: "c", Value: "$customer_id"}, {Key: "s", Value: "$status"}}},
				{Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}},
			}}},
		})
		if err != nil {
			return fmt.Errorf("count orders: %w", err)
		}
		var groups []struct {
			ID struct {
				Customer string `bson:"c"`
				Status   int32  `bson:"s"`
			} `bson:"_id"`
			N int64 `bson:"n"`
		}
		if err := cur.All(ctx, &groups); err != nil { // All closes the cursor
			return fmt.Errorf("count orders: %w", err)
		}
		for _, g := range groups {
			if i, ok := index[g.ID.Customer]; ok {
				out[i].OrderCounts.Add(domain.OrderStatus(g.ID.Status), g.N)
			}
		}
		return nil
	})
	return out, err
}

// DeadLetters implements views.Writer.
func (s *Store) DeadLetters(ctx context.Context, v views.View) ([]views.DeadLetter, error) {
	var out []views.DeadLetter
	err := s.readLive(ctx, func(live map[views.View]views.Target) error {
		out = nil
		return each(ctx, s.deadLetters(live[v]), bson.D{}, options.Find().SetSort(bson.D{{Key: "position", Value: 1}}), func(cur *mongo.Cursor) error {
			var rec stored.DeadLetter
			err := cur.Decode(&rec)
			out = append(out, rec.Letter())
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", v, err)
	}
	return out, nil
}

// SetPaused implements views.Writer.
func (s *Store) SetPaused(ctx context.Context, v views.View, paused bool) error {
	if !v.Valid() {
		return fmt.Errorf("pause: unknown view %q", v)
	}
	if _, err := s.state.UpdateOne(ctx, bson.D{{Key: "_id", Value: string(v)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "paused", Value: paused}}}}); err != nil {
		return fmt.Errorf("pause of %s: %w", v, err)
	}
	return nil
}
