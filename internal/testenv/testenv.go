// Package testenv gives integration tests the real servers they run
// against: Redis (REDIS_URL, default 127.0.0.1:6379) and NATS with
// JetStream (in-process, on a random port, stored in a temp dir). A server
// that cannot be had fails the test: scripts/test.sh starts them.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// RedisURL is the Redis the tests use.
func RedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis returns a client of the test Redis, closed when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is not reachable (%v): run the tests with scripts/test.sh, which starts it", RedisURL(), err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Prefix returns a key prefix of the test's own; its keys are deleted when
// the test ends.
func Prefix(t testing.TB, rdb *redis.Client) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	p := "smtest-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, p+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			_ = rdb.Del(ctx, keys[:n]...).Err()
			keys = keys[n:]
		}
	})
	return p
}

// NATSOptions are the options of an in-process JetStream server on a
// random port storing into dir.
func NATSOptions(dir string) *server.Options {
	return &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
}

// StartNATS starts an in-process NATS server with JetStream and returns it;
// it is shut down when the test ends.
func StartNATS(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// NATS starts an in-process JetStream server and returns a connection to it.
func NATS(t testing.TB) (*server.Server, *nats.Conn) {
	t.Helper()
	s := StartNATS(t, NATSOptions(t.TempDir()))
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}
