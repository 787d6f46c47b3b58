package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseAddr is the native-protocol address (host:port) of the test
// ClickHouse: CLICKHOUSE_ADDR, default 127.0.0.1:9000.
func ClickHouseAddr() string {
	if a := os.Getenv("CLICKHOUSE_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:9000"
}

// ClickHouse returns a native-protocol connection to the test ClickHouse,
// closed when the test ends. scripts/clickhouse.sh runs one.
func ClickHouse(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{ClickHouseAddr()},
		Auth:        clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatalf("ClickHouse at %s: %v", ClickHouseAddr(), err)
	}
	// A server that is busy starting (or restarting) gets a few seconds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = conn.Ping(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = conn.Close()
			t.Fatalf("ClickHouse at %s is not reachable (%v): run the tests with scripts/test.sh, which starts it", ClickHouseAddr(), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// ClickHouseDatabase creates a database of the test's own and returns its
// name; it is dropped when the test ends.
func ClickHouseDatabase(t testing.TB, conn driver.Conn) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "smtest_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create ClickHouse database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" SYNC"); err != nil {
			t.Errorf("drop ClickHouse database %s: %v", name, err)
		}
	})
	return name
}
