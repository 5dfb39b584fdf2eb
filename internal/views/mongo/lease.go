package mongo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/stored"
)

// The lease collections: one document per (processor, partition) in leases,
// one per (processor, member) in lease_members. Every write is a single
// document update (or an UpdateMany of independent ones) whose filter
// carries the condition — owner and epoch, or the epoch a claim saw — so
// MongoDB's per-document atomicity makes it a compare-and-set. Expiries are
// computed from the server's clock (lease_clock), never this process's.
const (
	leaseCollection  = "leases"
	memberCollection = "lease_members"
	clockCollection  = "lease_clock"
	claimCollection  = "lease_claims"
)

// leaseDoc is a partition's lease. Views holds the checkpoints fenced
// batches wrote for this partition, by view version (stored.Table): kept
// here so that the fence check and the checkpoint are one update.
type leaseDoc struct {
	ID        string `bson:"_id"`
	Processor string `bson:"processor"`
	Partition int    `bson:"partition"`
	// Of is the partition count the processor was set up with.
	Of         int              `bson:"of"`
	Owner      string           `bson:"owner"`
	Epoch      int64            `bson:"epoch"`
	Expires    time.Time        `bson:"expires"`
	Checkpoint positionDoc      `bson:"checkpoint"`
	Views      map[string]int64 `bson:"views,omitempty"`
}

// positionDoc is a lease.Position; MongoDB compares embedded documents
// field by field in order, so $max on it compares (commit, prepare) pairs.
type positionDoc struct {
	Commit  int64 `bson:"commit"`
	Prepare int64 `bson:"prepare"`
}

func (d leaseDoc) lease() lease.Lease {
	return lease.Lease{
		Partition: d.Partition, Owner: d.Owner, Epoch: lease.Epoch(d.Epoch), Expires: d.Expires,
		Checkpoint: lease.Position{Commit: uint64(d.Checkpoint.Commit), Prepare: uint64(d.Checkpoint.Prepare)},
	}
}

func leaseID(processor string, p int) string { return processor + "/" + strconv.Itoa(p) }

func (s *Store) leases() *mongo.Collection { return s.db.Collection(leaseCollection) }

func (s *Store) members() *mongo.Collection { return s.db.Collection(memberCollection) }

// initClock creates the clock document; concurrent opens may race to.
func (s *Store) initClock(ctx context.Context) error {
	_, err := s.db.Collection(clockCollection).InsertOne(ctx, bson.D{{Key: "_id", Value: "clock"}, {Key: "now", Value: time.Time{}}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("init lease clock: %w", err)
	}
	return nil
}

// now reads the server's clock: $currentDate is the one source of server
// time FerretDB offers outside update pipelines.
func (s *Store) now(ctx context.Context) (time.Time, error) {
	var d struct {
		Now time.Time `bson:"now"`
	}
	err := s.db.Collection(clockCollection).FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "clock"}},
		bson.D{{Key: "$currentDate", Value: bson.D{{Key: "now", Value: true}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the server's clock: %w", err)
	}
	return d.Now, nil
}

// SetupLeases implements lease.Store. Instances setting up at once may see
// each other's partitions half inserted: each lease records the count it
// was set up with, and each instance inserts whatever is missing, each
// partition on its own (a duplicate is another's), after checking that no
// lease records another count, and again after.
func (s *Store) SetupLeases(ctx context.Context, processor string, n int) error {
	if n <= 0 {
		return fmt.Errorf("set up leases of %s: %d partitions", processor, n)
	}
	err := s.otherCount(ctx, processor, n)
	for p := 0; p < n && err == nil; p++ {
		_, err = s.leases().InsertOne(ctx, leaseDoc{ID: leaseID(processor, p), Processor: processor, Partition: p, Of: n})
		if mongo.IsDuplicateKeyError(err) {
			err = nil
		}
	}
	if err == nil {
		err = s.otherCount(ctx, processor, n)
	}
	if err != nil {
		return fmt.Errorf("set up leases of %s: %w", processor, err)
	}
	return nil
}

// otherCount returns ErrPartitions if a lease of processor was set up with
// a count other than n.
func (s *Store) otherCount(ctx context.Context, processor string, n int) error {
	var d leaseDoc
	err := s.leases().FindOne(ctx, bson.D{{Key: "processor", Value: processor}, {Key: "of", Value: bson.D{{Key: "$ne", Value: n}}}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("set up with %d partitions, %d asked: %w", d.Of, n, lease.ErrPartitions)
	}
	return err
}

// processorLeases reads processor's lease documents in partition order.
func (s *Store) processorLeases(ctx context.Context, processor string, opts *options.FindOptionsBuilder) ([]leaseDoc, error) {
	var docs []leaseDoc
	err := each(ctx, s.leases(), bson.D{{Key: "processor", Value: processor}}, opts.SetSort(bson.D{{Key: "partition", Value: 1}}), func(cur *mongo.Cursor) error {
		var d leaseDoc
		err := cur.Decode(&d)
		docs = append(docs, d)
		return err
	})
	return docs, err
}

// ScanLeases implements lease.Store.
func (s *Store) ScanLeases(ctx context.Context, processor string) (lease.Snapshot, error) {
	snap, err := s.scanLeases(ctx, processor)
	if err != nil {
		return lease.Snapshot{}, fmt.Errorf("scan leases of %s: %w", processor, err)
	}
	return snap, nil
}

func (s *Store) scanLeases(ctx context.Context, processor string) (lease.Snapshot, error) {
	now, err := s.now(ctx)
	if err != nil {
		return lease.Snapshot{}, err
	}
	snap := lease.Snapshot{Now: now}
	docs, err := s.processorLeases(ctx, processor, options.Find().SetProjection(bson.D{{Key: "views", Value: 0}}))
	if err != nil {
		return lease.Snapshot{}, err
	}
	for _, d := range docs {
		snap.Leases = append(snap.Leases, d.lease())
	}
	err = each(ctx, s.members(),
		bson.D{{Key: "processor", Value: processor}, {Key: "expires", Value: bson.D{{Key: "$gt", Value: now}}}},
		options.Find().SetSort(bson.D{{Key: "owner", Value: 1}}), func(cur *mongo.Cursor) error {
			var m lease.Member
			err := cur.Decode(&m)
			snap.Members = append(snap.Members, m)
			return err
		})
	return snap, err
}

// Heartbeat implements lease.Store. Members that expired without leaving
// (their process died) are deleted on the way, so the collection holds only
// the recent ones.
func (s *Store) Heartbeat(ctx context.Context, processor, owner string, ttl time.Duration) error {
	now, err := s.now(ctx)
	if err == nil {
		_, err = s.members().DeleteMany(ctx, bson.D{{Key: "processor", Value: processor}, {Key: "expires", Value: bson.D{{Key: "$lte", Value: now}}}})
	}
	if err == nil {
		_, err = s.members().UpdateOne(ctx, bson.D{{Key: "_id", Value: processor + "/" + owner}},
			bson.D{{Key: "$set", Value: bson.D{
				{Key: "processor", Value: processor}, {Key: "owner", Value: owner}, {Key: "expires", Value: now.Add(ttl)},
			}}}, options.UpdateOne().SetUpsert(true))
	}
	if err != nil {
		return fmt.Errorf("heartbeat of %s in %s: %w", owner, processor, err)
	}
	return nil
}

// Leave implements lease.Store.
func (s *Store) Leave(ctx context.Context, processor, owner string) error {
	if _, err := s.members().DeleteOne(ctx, bson.D{{Key: "_id", Value: processor + "/" + owner}}); err != nil {
		return fmt.Errorf("leave of %s from %s: %w", owner, processor, err)
	}
	return nil
}

// Claim implements lease.Store.
func (s *Store) Claim(ctx context.Context, processor string, p int, owner string, seen lease.Epoch, ttl time.Duration) (lease.Lease, error) {
	if owner == "" {
		return lease.Lease{}, fmt.Errorf("claim of %s partition %d: no owner", processor, p)
	}
	l, err := s.claim(ctx, processor, p, owner, seen, ttl)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("claim of %s partition %d for %s: %w", processor, p, owner, err)
	}
	return l, nil
}

// claimToken names the claim of partition p's epoch e.
func claimToken(processor string, p int, e lease.Epoch) string {
	return leaseID(processor, p) + "@" + strconv.FormatUint(uint64(e), 10)
}

// claim inserts a token for the epoch it claims before the conditional
// update. MongoDB needs none: it applies a filtered update atomically. But
// FerretDB, which the tests run against, reads the matching document and
// then writes it back by _id, so claims racing at one epoch could all
// match; an insert on a unique _id is atomic on both, and lets one through.
// A claim that then fails removes its token; one that wins removes the
// previous epoch's, so each partition keeps about one. A token older than
// the ttl is a claimer's that died in between, and is taken over.
func (s *Store) claim(ctx context.Context, processor string, p int, owner string, seen lease.Epoch, ttl time.Duration) (lease.Lease, error) {
	now, err := s.now(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	claims := s.db.Collection(claimCollection)
	mine := claimToken(processor, p, seen+1)
	for taken := false; ; taken = true {
		_, err = claims.InsertOne(ctx, bson.D{{Key: "_id", Value: mine}, {Key: "at", Value: now}})
		if !mongo.IsDuplicateKeyError(err) {
			break
		}
		res, derr := claims.DeleteOne(ctx, bson.D{{Key: "_id", Value: mine}, {Key: "at", Value: bson.D{{Key: "$lte", Value: now.Add(-ttl)}}}})
		if derr != nil {
			return lease.Lease{}, derr
		}
		if taken || res.DeletedCount == 0 {
			return lease.Lease{}, fmt.Errorf("claimed by another at epoch %d: %w", seen+1, lease.ErrTaken)
		}
	}
	if err != nil {
		return lease.Lease{}, err
	}
	var d leaseDoc
	err = s.leases().FindOneAndUpdate(ctx,
		bson.D{
			{Key: "_id", Value: leaseID(processor, p)}, {Key: "epoch", Value: int64(seen)},
			{Key: "$or", Value: bson.A{
				bson.D{{Key: "owner", Value: ""}},
				bson.D{{Key: "expires", Value: bson.D{{Key: "$lte", Value: now}}}},
			}},
		},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "owner", Value: owner}, {Key: "expires", Value: now.Add(ttl)}}},
			{Key: "$inc", Value: bson.D{{Key: "epoch", Value: int64(1)}}},
		},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	done := claimToken(processor, p, seen)
	if err != nil {
		done = mine
	}
	_, derr := claims.DeleteOne(ctx, bson.D{{Key: "_id", Value: done}})
	if errors.Is(err, mongo.ErrNoDocuments) {
		return lease.Lease{}, errors.Join(derr, fmt.Errorf("held, or claimed since epoch %d: %w", seen, lease.ErrTaken))
	}
	return d.lease(), errors.Join(err, derr)
}

// heldBy selects the leases of held that owner holds at their epochs (the
// expiry aside): one filter for all, so a fence of 16 partitions is one
// update.
func heldBy(processor, owner string, held map[int]lease.Epoch) bson.D {
	pairs := bson.A{}
	for _, p := range slices.Sorted(maps.Keys(held)) {
		pairs = append(pairs, bson.D{{Key: "partition", Value: p}, {Key: "epoch", Value: int64(held[p])}})
	}
	return bson.D{{Key: "processor", Value: processor}, {Key: "owner", Value: owner}, {Key: "$or", Value: pairs}}
}

// updateHeld applies update to the leases of held that owner holds and
// returns those it does not. Those are found by a second read when the
// update matched fewer: a partition lost by then was lost at the update too,
// as owner and epoch change only by a claim, which raises the epoch.
func (s *Store) updateHeld(ctx context.Context, processor, owner string, held map[int]lease.Epoch, update bson.D) ([]int, error) {
	if len(held) == 0 {
		return nil, nil
	}
	filter := heldBy(processor, owner, held)
	s.leaseWrites.Lock()
	res, err := s.leases().UpdateMany(ctx, filter, update)
	s.leaseWrites.Unlock()
	if err != nil || res.MatchedCount == int64(len(held)) {
		return nil, err
	}
	var kept []int
	err = each(ctx, s.leases(), filter, options.Find().SetProjection(bson.D{{Key: "partition", Value: 1}}), func(cur *mongo.Cursor) error {
		var d leaseDoc
		err := cur.Decode(&d)
		kept = append(kept, d.Partition)
		return err
	})
	var lost []int
	for _, p := range slices.Sorted(maps.Keys(held)) {
		if !slices.Contains(kept, p) {
			lost = append(lost, p)
		}
	}
	return lost, err
}

// Renew implements lease.Store.
func (s *Store) Renew(ctx context.Context, processor, owner string, held map[int]lease.Epoch, ttl time.Duration) ([]int, error) {
	now, err := s.now(ctx)
	var lost []int
	if err == nil {
		lost, err = s.updateHeld(ctx, processor, owner, held, bson.D{{Key: "$set", Value: bson.D{{Key: "expires", Value: now.Add(ttl)}}}})
	}
	if err != nil {
		return nil, fmt.Errorf("renew of %s leases for %s: %w", processor, owner, err)
	}
	return lost, nil
}

// Release implements lease.Store.
func (s *Store) Release(ctx context.Context, processor, owner string, held map[int]lease.Epoch) error {
	now, err := s.now(ctx)
	if err == nil {
		_, err = s.updateHeld(ctx, processor, owner, held, bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: ""}, {Key: "expires", Value: now}}}})
	}
	if err != nil {
		return fmt.Errorf("release of %s leases for %s: %w", processor, owner, err)
	}
	return nil
}

// SaveCheckpoint implements lease.Store.
func (s *Store) SaveCheckpoint(ctx context.Context, processor, owner string, p int, e lease.Epoch, pos lease.Position) error {
	s.leaseWrites.Lock()
	defer s.leaseWrites.Unlock()
	res, err := s.leases().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: leaseID(processor, p)}, {Key: "owner", Value: owner}, {Key: "epoch", Value: int64(e)}},
		bson.D{{Key: "$max", Value: bson.D{{Key: "checkpoint", Value: positionDoc{Commit: int64(pos.Commit), Prepare: int64(pos.Prepare)}}}}})
	if err == nil && res.MatchedCount == 0 {
		err = fmt.Errorf("not held at epoch %d: %w", e, lease.ErrLost)
	}
	if err != nil {
		return fmt.Errorf("save checkpoint of %s partition %d for %s: %w", processor, p, owner, err)
	}
	return nil
}

// viewsKey is the field of a lease document that holds version t's
// checkpoint of that partition.
func viewsKey(t views.Target) string { return "views." + stored.Table(t.View, t.Version) }

// fencedCheckpoint raises t's checkpoint in each partition b.Fence holds, in
// one update whose filter is the fence.
func (s *Store) fencedCheckpoint(ctx context.Context, t views.Target, b views.Batch) error {
	lost, err := s.updateHeld(ctx, views.LeaseProcessor, b.Fence.Owner, b.Fence.Held,
		bson.D{{Key: "$max", Value: bson.D{{Key: viewsKey(t), Value: int64(b.Checkpoint)}}}})
	if err == nil && len(lost) > 0 {
		err = fmt.Errorf("partitions %v not held by %s: %w", lost, b.Fence.Owner, lease.ErrLost)
	}
	return err
}

// dropPartitions removes version t's checkpoints from the leases, once t is
// no longer live.
func (s *Store) dropPartitions(ctx context.Context, t views.Target) error {
	key := viewsKey(t)
	_, err := s.leases().UpdateMany(ctx,
		bson.D{{Key: "processor", Value: views.LeaseProcessor}, {Key: key, Value: bson.D{{Key: "$exists", Value: true}}}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: key, Value: ""}}}})
	if err != nil {
		return fmt.Errorf("drop the partition checkpoints of %s: %w", stored.Table(t.View, t.Version), err)
	}
	return nil
}

// partitioned is d's state with the partitions of the projector's leases
// (views.State.Partitions), read from docs.
func partitioned(d stateDoc, docs []leaseDoc) views.State {
	st := d.state()
	own := st.LiveCheckpoint
	key := stored.Table(views.View(d.View), views.Version(d.Live))
	for _, l := range docs {
		cp := max(uint64(l.Views[key]), own)
		if len(st.Partitions) == 0 || cp < st.LiveCheckpoint {
			st.LiveCheckpoint = cp
		}
		st.Partitions = append(st.Partitions, cp)
	}
	return st
}

// projectorLeases reads the projector's leases for their view checkpoints.
func (s *Store) projectorLeases(ctx context.Context) ([]leaseDoc, error) {
	docs, err := s.processorLeases(ctx, views.LeaseProcessor, options.Find().SetProjection(bson.D{{Key: "partition", Value: 1}, {Key: "views", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("partition checkpoints: %w", err)
	}
	return docs, nil
}
