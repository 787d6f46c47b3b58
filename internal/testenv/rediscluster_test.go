package testenv_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/internal/testenv"
)

// The cluster is real: three masters share the slots, keys of one hash tag
// go to one of them, and a command spanning two slots is refused.
func TestRedisCluster(t *testing.T) {
	start := time.Now()
	rdb := testenv.RedisCluster(t)
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots := 0
	for _, sh := range shards {
		for _, r := range sh.Slots {
			slots += int(r.End - r.Start + 1)
		}
	}
	if len(shards) != 3 || slots != 16384 {
		t.Fatalf("%d shards covering %d slots, want 3 covering 16384", len(shards), slots)
	}

	// Keys of sixteen hash tags land on every master.
	for p := range 16 {
		if err := rdb.Set(ctx, fmt.Sprintf("k:{%02d}:a", p), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var holding atomic.Int32
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		if n > 0 {
			holding.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := holding.Load(); n != 3 {
		t.Fatalf("the keys of 16 hash tags are on %d masters, want 3", n)
	}

	// One node asked directly for a key of two slots refuses it.
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		err := c.MGet(ctx, "k:{00}:a", "k:{01}:a").Err()
		if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			return fmt.Errorf("MGET across slots on %s: %v, want CROSSSLOT", c.Options().Addr, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
