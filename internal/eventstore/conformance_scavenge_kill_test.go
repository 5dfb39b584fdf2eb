package eventstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// TestScavenge_KilledMidway: a store process killed with SIGKILL in the middle
// of a scavenge, while a writer appends, comes back with every live event
// and every acknowledged append readable by stream and in $all, and a
// scavenge of the restarted store removes what the killed one left.
func TestScavenge_KilledMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), crashChildEnv+"="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child said %q, %v", line, err)
	}
	conn := "esdb://" + strings.TrimSpace(strings.TrimPrefix(line, "ADDR ")) + "?tls=false"
	c := estest.Client(t, conn)

	const streams = 600
	names := make([]string, streams)
	live := map[string]string{} // stream -> ID of its last event, all $maxCount 1 keeps
	for i := range names {
		names[i] = fmt.Sprintf("kill-%03d", i)
		evs := events(5, "e")
		mustAppend(t, c, names[i], esdb.NoStream{}, evs...)
		setMeta(t, c, names[i], esdb.NoStream{}, maxCount(1))
		live[names[i]] = names[i] + "/" + evs[4].EventID.String()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acked []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			evs := events(1, "load")
			if _, err := c.AppendToStream(ctx, "load", esdb.AppendToStreamOptions{}, evs...); err != nil {
				return // the store is gone
			}
			acked = append(acked, "load/"+evs[0].EventID.String())
		}
	})
	id := startScavenge(t, opsClient(t, conn)).GetScavengeId()
	// Kill once the scavenge has reported progress, before it completes.
	sub := subscribeFromStart(t, c, "$scavenges-"+id)
	for {
		ev := sub.Recv()
		if ev.SubscriptionDropped != nil {
			t.Fatalf("follow scavenge: %v", ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared == nil {
			continue
		}
		if typ := ev.EventAppeared.Event.EventType; typ == "$scavengeCompleted" {
			t.Fatal("the scavenge completed before the kill: give it more streams")
		} else if typ == "$scavengeProgress" {
			break
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	cancel()
	wg.Wait()

	st := newScavStore(t, estest.WithConfig(func(c *eventstore.Config) { c.Dir = dir }))
	check := func(when string) map[string][]uint64 {
		t.Helper()
		all := map[string]bool{}
		for _, id := range eventIDs(readAll(t, st.c, esdb.ReadAllOptions{}, 1<<20)) {
			all[id] = true
		}
		for _, s := range names {
			evs, err := readStream(t, st.c, s, esdb.ReadStreamOptions{}, 10)
			if got := eventIDs(evs); err != nil || len(got) != 1 || got[0] != live[s] || !all[live[s]] {
				t.Fatalf("%s: %s reads %v, %v; want its last event %s, also in $all", when, s, got, err, live[s])
			}
		}
		evs, err := readStream(t, st.c, "load", esdb.ReadStreamOptions{}, 1<<20)
		got := eventIDs(evs)
		if err != nil || len(got) < len(acked) || !slices.Equal(got[:len(acked)], acked) {
			t.Fatalf("%s: load holds %d events, %v; want the %d acknowledged first", when, len(got), err, len(acked))
		}
		return onDisk(t, st.c, names...)
	}
	disk := check("after the kill")
	scavenged, left := 0, 0
	for _, s := range names {
		if len(disk[s]) == 1 {
			scavenged++
		} else {
			left++
		}
	}
	if scavenged == 0 || left == 0 {
		t.Fatalf("after the kill %d streams are scavenged and %d not; want the kill mid-way", scavenged, left)
	}
	st.scavenge(t)
	for s, revs := range check("after a second scavenge") {
		if !slices.Equal(revs, []uint64{4}) {
			t.Fatalf("after the second scavenge $all holds %s %v, want [4]", s, revs)
		}
	}
}
