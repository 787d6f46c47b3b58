package testenv

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClickHouse(t *testing.T) {
	conn := ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("version: %v", err)
	}
	if !strings.HasPrefix(version, "26.") {
		t.Fatalf("ClickHouse version %q, want 26.x", version)
	}

	table := ClickHouseDatabase(t, conn) + ".events"
	err := conn.Exec(ctx, `CREATE TABLE `+table+` (
		kind LowCardinality(String),
		ip   IPv6,
		at   DateTime64(3, 'UTC')
	) ENGINE = MergeTree ORDER BY (kind, at)`)
	if err != nil {
		t.Fatalf("create table: %v", err)
	}

	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table)
	if err != nil {
		t.Fatalf("prepare batch: %v", err)
	}
	defer func() { _ = batch.Close() }()
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	kinds := []string{"login", "refresh", "logout"}
	ips := []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:192.0.2.7")}
	const rows = 100
	for i := range rows {
		if err := batch.Append(kinds[i%len(kinds)], ips[i%len(ips)], at.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatalf("append row %d: %v", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("send batch: %v", err)
	}

	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	if n != rows {
		t.Fatalf("count() = %d, want %d", n, rows)
	}

	var (
		kind  string
		ip    netip.Addr
		first time.Time
	)
	err = conn.QueryRow(ctx, "SELECT kind, ip, at FROM "+table+" ORDER BY at LIMIT 1").Scan(&kind, &ip, &first)
	if err != nil {
		t.Fatalf("first row: %v", err)
	}
	if kind != "login" || ip != ips[0] || !first.Equal(at) {
		t.Fatalf("first row = %q %v %v, want login %v %v", kind, ip, first, ips[0], at)
	}
}
