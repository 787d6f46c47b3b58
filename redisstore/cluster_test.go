package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
	"github.com/sessionmon/sessionmon/sessions/sessionstest"
)

// TestCluster runs the store, the relay and the sweeper over a real Redis
// Cluster of three masters, among which the 16 partitions' slots are
// spread: a script touching keys of two slots, a library missing on a
// master or an outbox the relay does not read fails here, where a single
// Redis lets it pass. One cluster serves the subtests (starting one takes
// about two seconds); each has a key prefix of its own.
func TestCluster(t *testing.T) {
	rdb := testenv.RedisCluster(t)
	if n := mastersOf(t, rdb, func(context.Context, *redis.Client) (bool, error) { return true, nil }); n != 3 {
		t.Fatalf("the cluster has %d masters, want 3", n)
	}
	// First: it needs a cluster where the library was never loaded.
	t.Run("FunctionsOnEveryMaster", func(t *testing.T) { testClusterFunctions(t, rdb) })
	t.Run("Contract", func(t *testing.T) {
		sessionstest.Run(t, func(t *testing.T) sessionstest.Harness {
			st, _ := clusterStore(t, rdb)
			return harness(st, rdb)
		})
	})
	t.Run("Relay", func(t *testing.T) { testClusterRelay(t, rdb) })
	t.Run("Sweeper", func(t *testing.T) { testClusterSweeper(t, rdb) })
}

// clusterStore returns a store over the cluster with a key prefix of the
// test's own. Its keys stay: the cluster goes with the test.
func clusterStore(t *testing.T, rdb *redis.ClusterClient) (*redisstore.Store, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "smc-" + hex.EncodeToString(b[:])
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return st, prefix
}

// mastersOf returns on how many masters of the cluster f holds.
func mastersOf(t *testing.T, rdb *redis.ClusterClient, f func(context.Context, *redis.Client) (bool, error)) int {
	t.Helper()
	var n atomic.Int32
	err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		ok, err := f(ctx, c)
		if ok {
			n.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return int(n.Load())
}

func hasLibrary(ctx context.Context, c *redis.Client) (bool, error) {
	libs, err := c.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: redisstore.LibraryName()}).Result()
	return len(libs) == 1, err
}

// usersPerPartition returns n user IDs of every partition.
func usersPerPartition(tag string, n int) []string {
	var count [events.Partitions]int
	var out []string
	for i := 0; len(out) < n*events.Partitions; i++ {
		u := fmt.Sprintf("%s-%d", tag, i)
		if p := events.PartitionOf(u); count[p] < n {
			count[p]++
			out = append(out, u)
		}
	}
	return out
}

// The store loads its library into every master by itself, and again when
// one master lost it (restarted without persistence): calls of every
// partition, so to every master, succeed throughout.
func testClusterFunctions(t *testing.T, rdb *redis.ClusterClient) {
	ctx := context.Background()
	if n := mastersOf(t, rdb, hasLibrary); n != 0 {
		t.Fatalf("the library is on %d masters before any call", n)
	}
	st, _ := clusterStore(t, rdb)
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	shop := sessions.Caller{Name: "shop"}
	users := usersPerPartition("f", 1)
	toks := make([]sessions.Token, len(users))
	for i, u := range users {
		is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: u, IP: "192.0.2.1"})
		if err != nil {
			t.Fatalf("create for %s (partition %d): %v", u, events.PartitionOf(u), err)
		}
		toks[i] = is.Token
	}
	if n := mastersOf(t, rdb, hasLibrary); n != 3 {
		t.Fatalf("the library is on %d masters after the first calls, want 3", n)
	}
	// The master of the last user's partition loses it.
	m, err := rdb.MasterForKey(ctx, st.OutboxKey(events.PartitionOf(users[len(users)-1])))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.FunctionFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i, u := range users {
		if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: toks[i], IP: "192.0.2.1"}); err != nil {
			t.Fatalf("validate of %s after a master lost the library: %v", u, err)
		}
	}
	if n := mastersOf(t, rdb, hasLibrary); n != 3 {
		t.Fatalf("the library is on %d masters after the reload, want 3", n)
	}
	if got, want := len(outbox(t, st, rdb)), 2*len(users); got != want {
		t.Fatalf("%d events in the outboxes, want %d", got, want)
	}
}

// clusterPublisher returns a publisher to a JetStream of the test's own
// with the SESSIONS stream in place.
func clusterPublisher(t *testing.T) *eventbus.Publisher {
	t.Helper()
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventbus.EnsureSessionStream(context.Background(), pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	return pub
}

// runRelay runs a relay of st over the cluster until the returned stop is
// called; stop waits for it to flush and release its leases.
func runRelay(t *testing.T, st *redisstore.Store, rdb *redis.ClusterClient, pub *eventbus.Publisher, cfg redisstore.RelayConfig) (*prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	relay := redisstore.NewRelay(st, rdb, pub, slog.New(slog.DiscardHandler), redisstore.NewMetrics(reg), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return reg, stop
}

// relayErrors returns the relay's errors by kind.
func relayErrors(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sessionmon_relay_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v > 0 {
				out[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return out
}

// checkDrained fails t unless every outbox of st is empty and no lease is
// held.
func checkDrained(t *testing.T, st *redisstore.Store, rdb *redis.ClusterClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	for p := range events.Partitions {
		if n, err := rdb.XLen(ctx, st.OutboxKey(p)).Result(); err != nil || n != 0 {
			t.Errorf("partition %d outbox holds %d entries (%v)", p, n, err)
		}
		lease := fmt.Sprintf("%s:{%02d}:lease", prefix, p)
		if n, err := rdb.Exists(ctx, lease).Result(); err != nil || n != 0 {
			t.Errorf("partition %d lease %s still held (%v)", p, lease, err)
		}
	}
}

// Sessions of users of every partition, so of every master, are created,
// validated and ended, some before the relay starts (a backlog in every
// outbox) and the rest concurrently while it runs: every event reaches the
// stream once, each user's in the order Redis committed them.
func testClusterRelay(t *testing.T, rdb *redis.ClusterClient) {
	ctx := context.Background()
	st, prefix := clusterStore(t, rdb)
	pub := clusterPublisher(t)
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	shop := sessions.Caller{Name: "shop"}
	users := usersPerPartition("r", 3)
	type user struct {
		a, b *sessions.Issued
		want []string
	}
	us := make([]*user, len(users))
	for i, uid := range users {
		u := &user{}
		for _, is := range []**sessions.Issued{&u.a, &u.b} {
			if *is, err = svc.Create(ctx, shop, sessions.CreateRequest{UserID: uid, IP: "192.0.2.1"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: u.a.Token, IP: "192.0.2.2"}); err != nil {
			t.Fatal(err)
		}
		a, b := u.a.Session.ID, u.b.Session.ID
		u.want = []string{"session.created " + a, "session.created " + b, "session.accessed " + a + " 192.0.2.2",
			"session.accessed " + a + " 192.0.2.3", "session.terminated " + a, "session.revoked " + b}
		us[i] = u
	}

	reg, stop := runRelay(t, st, rdb, pub, redisstore.RelayConfig{Batch: 64})
	// Concurrent validations share pipelines, which a cluster splits by
	// master.
	errs := make(chan error, len(users))
	for i, uid := range users {
		go func() {
			u := us[i]
			if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: u.a.Token, IP: "192.0.2.3"}); err != nil {
				errs <- fmt.Errorf("validate %s: %w", uid, err)
				return
			}
			if err := svc.Logout(ctx, shop, u.a.Token); err != nil {
				errs <- fmt.Errorf("logout %s: %w", uid, err)
				return
			}
			if n, err := svc.RevokeUser(ctx, shop, uid, "password_changed", ""); err != nil || n != 1 {
				errs <- fmt.Errorf("revoke %s: %d sessions ended, %v", uid, n, err)
				return
			}
			errs <- nil
		}()
	}
	for range users {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := len(users) * len(us[0].want)
	testenv.WaitSessionEvents(t, pub.JetStream(), want)
	time.Sleep(200 * time.Millisecond) // room for a duplicate to arrive
	stop()

	all := testenv.SessionEvents(t, pub.JetStream())
	seen := map[string]int{}
	got := map[string][]string{}
	for _, e := range all {
		if seen[e.ID]++; seen[e.ID] > 1 {
			t.Errorf("event %s (%s of %s) stored twice", e.ID, e.Type, e.Data.UserID)
		}
		d := string(e.Type) + " " + e.Data.SessionID
		if e.Type == events.SessionAccessed {
			d += " " + e.Data.IP
		}
		got[e.Data.UserID] = append(got[e.Data.UserID], d)
	}
	for i, uid := range users {
		if g, w := fmt.Sprint(got[uid]), fmt.Sprint(us[i].want); g != w {
			t.Errorf("user %s (partition %d):\n got %s\nwant %s", uid, events.PartitionOf(uid), g, w)
		}
	}
	if len(all) != want {
		t.Errorf("stream holds %d events, want %d", len(all), want)
	}
	if errs := relayErrors(t, reg); len(errs) > 0 {
		t.Errorf("relay errors: %v", errs)
	}
	checkDrained(t, st, rdb, prefix)
}

// A session that times out is ended by the relay's sweeper, on the master
// of its partition, and its session.expired reaches the stream without any
// validation.
func testClusterSweeper(t *testing.T, rdb *redis.ClusterClient) {
	ctx := context.Background()
	st, prefix := clusterStore(t, rdb)
	pub := clusterPublisher(t)
	clock := sessionstest.NewClock()
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	users := usersPerPartition("s", 1)
	sids := map[string]string{}
	for _, u := range users {
		is, err := svc.Create(ctx, sessions.Caller{Name: "shop"}, sessions.CreateRequest{UserID: u, IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		sids[u] = is.Session.ID
	}
	reg, stop := runRelay(t, st, rdb, pub, redisstore.RelayConfig{Now: clock.Now, SweepInterval: 20 * time.Millisecond})
	testenv.WaitSessionEvents(t, pub.JetStream(), len(users))
	for p := range events.Partitions {
		if n, err := rdb.ZCard(ctx, st.DueKey(p)).Result(); err != nil || n != 1 {
			t.Fatalf("partition %d schedules %d sessions (%v), want 1", p, n, err)
		}
	}
	// The collector reads every partition's schedule, on its master.
	if n := activeSessions(t, st); n != len(users) {
		t.Fatalf("collector: %d active sessions, want %d", n, len(users))
	}

	clock.Advance(sessions.DefaultPolicy().IdleTimeout + time.Second)
	testenv.WaitSessionEvents(t, pub.JetStream(), 2*len(users))
	time.Sleep(100 * time.Millisecond) // room for a duplicate to arrive
	stop()

	got := map[string][]string{}
	for _, e := range testenv.SessionEvents(t, pub.JetStream()) {
		got[e.Data.UserID] = append(got[e.Data.UserID], fmt.Sprintf("%s %s %s %s", e.Type, e.Data.SessionID, e.Data.Reason, e.Data.Actor))
	}
	for _, u := range users {
		sid := sids[u]
		want := fmt.Sprint([]string{"session.created " + sid + "  shop", "session.expired " + sid + " idle_timeout sweeper"})
		if g := fmt.Sprint(got[u]); g != want {
			t.Errorf("user %s (partition %d):\n got %s\nwant %s", u, events.PartitionOf(u), g, want)
		}
	}
	for p := range events.Partitions {
		if n, err := rdb.ZCard(ctx, st.DueKey(p)).Result(); err != nil || n != 0 {
			t.Errorf("partition %d still schedules %d sessions (%v)", p, n, err)
		}
	}
	checkDrained(t, st, rdb, prefix)
	if n := activeSessions(t, st); n != 0 {
		t.Errorf("collector: %d active sessions after the sweep, want 0", n)
	}
	if errs := relayErrors(t, reg); len(errs) > 0 {
		t.Errorf("relay errors: %v", errs)
	}
}

// activeSessions is the sessionmon_sessions_active of st's collector.
func activeSessions(t *testing.T, st *redisstore.Store) int {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(redisstore.NewCollector(st))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sessionmon_sessions_active" {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	t.Fatal("collector reports no sessionmon_sessions_active")
	return 0
}
