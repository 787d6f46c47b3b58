package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// chdbCache is where scripts/clickhouse.sh keeps the ClickHouse library
// and its launcher.
func chdbCache() string {
	if d := os.Getenv("SESSIONMON_CACHE"); d != "" {
		return filepath.Join(d, "chdb")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "sessionmon", "chdb")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "sessionmon", "chdb")
}

// PrivateClickHouse starts a ClickHouse of the test's own (the launcher
// and library scripts/clickhouse.sh prepared, a fresh data directory, free
// ports) and returns its native address and a connection to it. The server
// is restarted whenever it exits until the test ends: tests that kill a
// client in the middle of an insert use it, because the embedded server
// has been seen to stop with a fatal error then, and the shared server
// must not take the other tests down with it.
func PrivateClickHouse(t testing.TB) (string, driver.Conn) {
	t.Helper()
	cache := chdbCache()
	bin := filepath.Join(cache, "chlaunch")
	libs, _ := filepath.Glob(filepath.Join(cache, "libchdb-*.so"))
	if _, err := os.Stat(bin); err != nil || len(libs) == 0 {
		t.Fatalf("no ClickHouse launcher in %s: run the tests with scripts/test.sh, which prepares it", cache)
	}
	tcp, http := freePort(t), freePort(t)
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			cmd := exec.CommandContext(ctx, bin, "-lib", libs[len(libs)-1], "-path", data+"/", "-listen", "127.0.0.1",
				"-tcp-port", fmt.Sprint(tcp), "-http-port", fmt.Sprint(http))
			cmd.Stdout, cmd.Stderr = nil, nil
			dieWithTest(cmd)
			err := cmd.Run()
			if ctx.Err() == nil {
				t.Logf("private ClickHouse exited (%v); restarting it", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", tcp)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := conn.Ping(pctx)
		pcancel()
		if err == nil {
			return addr, conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("private ClickHouse on %s did not answer: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
