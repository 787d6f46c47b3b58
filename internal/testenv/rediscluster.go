package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is the number of masters of RedisCluster: enough that the
// 16 partitions spread over several of them, so that a command sent to the
// wrong master, or a library loaded on one master only, shows.
const clusterMasters = 3

// redisNode is one redis-server process of a test cluster.
type redisNode struct {
	port, bus int
	dir       string
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has exited
	err       error         // why it exited, once exited is closed
}

func (n *redisNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }
func (n *redisNode) log() string  { return filepath.Join(n.dir, "redis.log") }

// RedisCluster starts a Redis Cluster of the test's own, three masters and
// no replicas, from the machine's redis-server on free ports of 127.0.0.1,
// and returns a client of it. Every node keeps its cluster configuration
// and log in a directory of its own under the test's temp dir; the logs are
// printed when the test fails, and the processes are killed when it ends.
//
// Slots are assigned through the client rather than redis-cli --cluster
// create, which waits in steps of a second: each node adds a third of the
// slots and the first one meets the others. The cluster is ready once every
// node reports cluster_state:ok, about two seconds after the start (a
// master waits that long before it serves its slots).
//
// Without a redis-server the test fails.
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		// Never a skip, like every server of the tests: scripts/test.sh
		// installs redis-server when it is missing.
		t.Fatalf("no redis-server to start a Redis Cluster with (%v): install Redis 7 (Debian's redis-server), or run scripts/test.sh", err)
	}
	root := t.TempDir()
	nodes := make([]*redisNode, clusterMasters)
	used := map[int]bool{}
	port := func() int {
		for {
			if p := freePort(t); !used[p] {
				used[p] = true
				return p
			}
		}
	}
	// Registered after TempDir's, so run before it: the logs are still there.
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				_ = n.cmd.Process.Kill()
				<-n.exited
			}
		}
		if t.Failed() {
			for i, n := range nodes {
				if n == nil {
					continue
				}
				b, err := os.ReadFile(n.log())
				if err != nil || len(b) == 0 {
					b = []byte(fmt.Sprintf("(none: %v)", err))
				}
				t.Logf("Redis Cluster node %d (%s) log:\n%s", i, n.addr(), tail(string(b), 40))
			}
		}
	})

	for i := range nodes {
		n := &redisNode{port: port(), bus: port(), dir: filepath.Join(root, fmt.Sprintf("node%d", i)), exited: make(chan struct{})}
		if err := os.Mkdir(n.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// cluster-port (Redis 7) puts the bus on a free port of its own
		// rather than port+10000, which may be taken.
		n.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(n.port),
			"--cluster-enabled", "yes", "--cluster-port", fmt.Sprint(n.bus),
			"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
			"--save", "", "--appendonly", "no", "--dir", n.dir, "--logfile", n.log())
		var out bytes.Buffer // what it says before the log file is open
		n.cmd.Stdout, n.cmd.Stderr = &out, &out
		dieWithTest(n.cmd)
		if err := n.cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		go func() {
			n.err = n.cmd.Wait()
			if out.Len() > 0 {
				n.err = fmt.Errorf("%w: %s", n.err, strings.TrimSpace(out.String()))
			}
			close(n.exited)
		}()
		nodes[i] = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.addr(), MaxRetries: -1, DialTimeout: time.Second})
		defer clients[i].Close()
	}
	if err := setUpCluster(ctx, nodes, clients); err != nil {
		t.Fatalf("Redis Cluster of %s: %v", bin, err)
	}

	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr()
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatalf("Redis Cluster client: %v", err)
	}
	return rdb
}

// setUpCluster waits for the nodes to answer, gives each a third of the
// slots, joins them and waits until every node sees the whole cluster up.
func setUpCluster(ctx context.Context, nodes []*redisNode, clients []*redis.Client) error {
	for i, c := range clients {
		if err := waitNode(ctx, nodes[i], func() error { return c.Ping(ctx).Err() }); err != nil {
			return fmt.Errorf("node %d did not start: %w", i, err)
		}
	}
	const slots = 16384
	for i, c := range clients {
		lo, hi := i*slots/len(clients), (i+1)*slots/len(clients)-1
		if err := c.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("node %d: add slots %d-%d: %w", i, lo, hi, err)
		}
		// Distinct epochs, as redis-cli gives them, spare the nodes
		// resolving a collision before they agree.
		if err := c.Do(ctx, "cluster", "set-config-epoch", i+1).Err(); err != nil {
			return fmt.Errorf("node %d: set config epoch: %w", i, err)
		}
	}
	for i, n := range nodes[1:] {
		// The bus port is given: it is not the default port+10000.
		if err := clients[0].Do(ctx, "cluster", "meet", "127.0.0.1", n.port, n.bus).Err(); err != nil {
			return fmt.Errorf("node 0 meets node %d: %w", i+1, err)
		}
	}
	for i, c := range clients {
		err := waitNode(ctx, nodes[i], func() error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r\n", len(nodes))) {
				return fmt.Errorf("not ready: %s", infoField(info, "cluster_state")+" "+infoField(info, "cluster_known_nodes"))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("node %d: cluster state: %w", i, err)
		}
	}
	return nil
}

// waitNode polls ready until it succeeds, the node exits or ctx ends.
func waitNode(ctx context.Context, n *redisNode, ready func() error) error {
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("redis-server on %s exited (%v)", n.addr(), n.err)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// infoField returns the line of an INFO-style reply that starts with name.
func infoField(info, name string) string {
	for l := range strings.Lines(info) {
		if strings.HasPrefix(l, name+":") {
			return strings.TrimSpace(l)
		}
	}
	return name + ":?"
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
