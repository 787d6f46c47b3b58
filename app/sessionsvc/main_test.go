package sessionsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

const (
	appKey   = "shop:app:shop-secret-0123456789abcdef"
	adminKey = "detector:admin:detector-secret-0123456789ab"
)

type service struct {
	url  string
	log  *testenv.LogBuffer
	stop func() error
}

// start runs the service on a random port against the test Redis and the
// given NATS server.
func start(t *testing.T, natsURL, prefix string, extra ...string) *service {
	t.Helper()
	env := map[string]string{
		"REDIS_URL":           testenv.RedisURL(),
		"NATS_URL":            natsURL,
		"SESSIONSVC_API_KEYS": appKey + "," + adminKey,
	}
	args := append([]string{"-listen", "127.0.0.1:0", "-redis-key-prefix", prefix, "-log-level", "debug"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	log := &testenv.LogBuffer{}
	go func() {
		done <- Run(ctx, args, func(k string) string { return env[k] }, log, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		s := &service{url: "http://" + a, log: log}
		var once sync.Once
		var err error
		s.stop = func() error {
			once.Do(func() { cancel(); err = <-done })
			return err
		}
		t.Cleanup(func() { _ = s.stop() })
		return s
	case err := <-done:
		cancel()
		t.Fatalf("service did not start: %v\n%s", err, log.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("service did not start in 10s")
	}
	return nil
}

func (s *service) call(t *testing.T, method, path, key string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key[strings.LastIndexByte(key, ':')+1:])
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (s *service) login(t *testing.T, user string) string {
	t.Helper()
	code, out := s.call(t, "POST", "/v1/sessions", appKey, map[string]any{"user_id": user, "ip": "203.0.113.9", "user_agent": "Firefox"})
	if code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	return out["token"].(string)
}

func (s *service) validate(t *testing.T, token string) int {
	t.Helper()
	code, _ := s.call(t, "POST", "/v1/sessions/validate", appKey, map[string]any{"token": token, "ip": "203.0.113.9", "user_agent": "Firefox"})
	return code
}

// streamEvents reads the whole SESSIONS stream and decodes every event.
func streamEvents(t *testing.T, nc *nats.Conn) []events.Event {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.SessionEvents(t, js)
}

// waitStream waits until the stream holds n events.
func waitStream(t *testing.T, nc *nats.Conn, n int) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitSessionEvents(t, js, n)
}

func TestEndToEnd(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	ns, nc := testenv.NATS(t)
	s := start(t, ns.ClientURL(), prefix)

	tok := s.login(t, "alice")
	if code := s.validate(t, tok); code != 200 {
		t.Fatalf("validate: %d", code)
	}
	code, out := s.call(t, "POST", "/v1/sessions/logout", appKey, map[string]any{"token": tok})
	if code != 204 {
		t.Fatalf("logout: %d %v", code, out)
	}
	code, out = s.call(t, "POST", "/v1/sessions/validate", appKey, map[string]any{"token": tok, "ip": "203.0.113.9"})
	if code != 401 || out["error"].(map[string]any)["code"] != "session_revoked" {
		t.Fatalf("validate after logout: %d %v", code, out)
	}
	code, out = s.call(t, "GET", "/readyz", "", nil)
	if code != 200 || out["redis"] != "ok" || out["nats"] != "CONNECTED" {
		t.Fatalf("readyz: %d %v", code, out)
	}
	waitStream(t, nc, 4)
	var types []events.Type
	for _, e := range streamEvents(t, nc) {
		types = append(types, e.Type)
	}
	if fmt.Sprint(types) != "[session.created session.accessed session.terminated session.rejected]" {
		t.Fatalf("stream events %v", types)
	}
	// The metrics endpoint serves the service's metrics.
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"sessionmon_sessions_created_total 1", `sessionmon_sessions_validations_total{result="session_revoked"} 1`,
		"sessionmon_outbox_depth", "sessionmon_sessions_active", "go_goroutines", "process_cpu_seconds_total",
		`sessionmon_build_info{go_version="go`} {
		if !bytes.Contains(body, []byte(m)) {
			t.Errorf("metrics lack %q", m)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.log.String(), tok[strings.IndexByte(tok, '.')+1:]) {
		t.Fatal("the service logged a token")
	}
}

// With -redis-cluster the service runs on a real Redis Cluster of three
// masters: users of every partition (their keys spread over the masters)
// log in, validate and log out, readiness pings every master, and every
// event reaches JetStream.
func TestRedisCluster(t *testing.T) {
	cc := testenv.RedisCluster(t)
	addrs := cc.Options().Addrs
	url := "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	ns, nc := testenv.NATS(t)
	s := start(t, ns.ClientURL(), "sm", "-redis-cluster", "-redis-url", url)

	const users = 32 // every partition, most of them twice
	for i := range users {
		tok := s.login(t, fmt.Sprintf("user-%d", i))
		if code := s.validate(t, tok); code != 200 {
			t.Fatalf("user-%d: validate: %d", i, code)
		}
		if code, out := s.call(t, "POST", "/v1/sessions/logout", appKey, map[string]any{"token": tok}); code != 204 {
			t.Fatalf("user-%d: logout: %d %v", i, code, out)
		}
		if code := s.validate(t, tok); code != 401 {
			t.Fatalf("user-%d: validate after logout: %d", i, code)
		}
	}
	code, out := s.call(t, "GET", "/readyz", "", nil)
	if code != 200 || out["redis"] != "ok" {
		t.Fatalf("readyz: %d %v", code, out)
	}
	waitStream(t, nc, 4*users)
	partitions := map[int]bool{}
	perUser := map[string][]events.Type{}
	for _, e := range streamEvents(t, nc) {
		partitions[events.PartitionOf(e.Data.UserID)] = true
		perUser[e.Data.UserID] = append(perUser[e.Data.UserID], e.Type)
	}
	if len(partitions) != events.Partitions || len(perUser) != users {
		t.Fatalf("events of %d partitions and %d users, want %d and %d", len(partitions), len(perUser), events.Partitions, users)
	}
	for u, types := range perUser {
		if fmt.Sprint(types) != "[session.created session.accessed session.terminated session.rejected]" {
			t.Fatalf("%s: events %v", u, types)
		}
	}
	// Every master holds sessions: the partitions are spread over them.
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, "sm:{*}:s:*").Result()
		if err == nil && len(keys) == 0 {
			err = fmt.Errorf("master %s holds no session", m.Options().Addr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Stop NATS, keep serving, start NATS again: every event arrives, once.
func TestNoEventLostWhileNATSIsDown(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	dir := t.TempDir()
	opts := testenv.NATSOptions(dir)
	ns := testenv.StartNATS(t, opts)
	port := ns.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	url := "nats://127.0.0.1:" + port
	s := start(t, url, prefix)

	traffic := func(users int) {
		for i := range users {
			tok := s.login(t, fmt.Sprintf("user-%d-%d", i, time.Now().UnixNano()))
			if code := s.validate(t, tok); code != 200 {
				t.Fatalf("validate: %d", code)
			}
		}
	}
	traffic(50)
	ns.Shutdown()
	ns.WaitForShutdown()
	traffic(50) // the API keeps serving with NATS down
	time.Sleep(500 * time.Millisecond)
	traffic(50)

	opts2 := testenv.NATSOptions(dir)
	fmt.Sscan(port, &opts2.Port)
	ns2 := testenv.StartNATS(t, opts2)
	nc, err := nats.Connect(ns2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	traffic(50)
	const want = 200 * 2
	waitStream(t, nc, want)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	evs := streamEvents(t, nc)
	ids := map[string]int{}
	for _, e := range evs {
		ids[e.ID]++
	}
	if len(evs) != want || len(ids) != want {
		t.Fatalf("stream holds %d events with %d distinct IDs, want %d", len(evs), len(ids), want)
	}
	// In commit order: each user's session.created before its access.
	created := map[string]bool{}
	for _, e := range evs {
		switch e.Type {
		case events.SessionCreated:
			created[e.Data.UserID] = true
		case events.SessionAccessed:
			if !created[e.Data.UserID] {
				t.Fatalf("the access of %s is stored before its creation", e.Data.UserID)
			}
		}
	}
	depth := outboxDepth(rdb, prefix)
	if depth != 0 {
		t.Fatalf("outbox still holds %d events", depth)
	}
}

// SIGTERM drains requests and flushes the outbox before exit.
func TestShutdownFlushesOutbox(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	ns, nc := testenv.NATS(t)
	s := start(t, ns.ClientURL(), prefix)
	for i := range 100 {
		s.login(t, fmt.Sprintf("u%d", i))
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	waitStream(t, nc, 100)
	depth := outboxDepth(rdb, prefix)
	if depth != 0 {
		t.Fatalf("outbox holds %d events after shutdown", depth)
	}
}

func TestBadConfig(t *testing.T) {
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, nil, "no API keys configured"},
		{map[string]string{"SESSIONSVC_API_KEYS": "shop:app:short"}, nil, "secret shorter than 24"},
		{map[string]string{"SESSIONSVC_API_KEYS": "shop:root:" + strings.Repeat("x", 30)}, nil, `role must be "app" or "admin"`},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey + "," + appKey}, nil, "name used twice"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_IDLE_TIMEOUT": "soon"}, nil, "SESSIONSVC_IDLE_TIMEOUT: invalid value"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_MAX_SESSIONS": "-1"}, nil, "max sessions"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey}, []string{"-idle-timeout", "9h"}, "absolute timeout: 8h0m0s is shorter than the idle timeout 9h0m0s"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_LIMIT_MODE": "reject"}, nil, "limit mode"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "REDIS_URL": "http://x"}, nil, "REDIS_URL (-redis-url)"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_LISTEN": "nohost"}, nil, "SESSIONSVC_LISTEN (-listen)"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_API_KEYS_FILE": "/nonexistent"}, nil, "SESSIONSVC_API_KEYS_FILE (-api-keys-file)"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "LOG_FORMAT": "xml"}, nil, "log format"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_REDIS_KEY_PREFIX": "a{b"}, nil, "must not contain"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_STORE": "postgres"}, nil, `SESSIONSVC_STORE (-store): want redis or memory, got "postgres"`},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "NATS_TLS_CERT": "client.crt"}, nil, "NATS_TLS_CERT (-nats-tls-cert): give both the client certificate and its key (NATS_TLS_KEY (-nats-tls-key)), or neither"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "NATS_TLS_CA": "/nonexistent/ca.crt"}, nil, "NATS_TLS_CA (-nats-tls-ca): open /nonexistent/ca.crt"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey}, []string{"-nats-creds", "/nonexistent/sessionsvc.creds"}, "NATS_CREDS (-nats-creds): "},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "NATS_URL": "http://nats:4222"}, nil, `NATS_URL (-nats-url): scheme "http"`},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_EVENT_BATCH": "0"}, nil, "SESSIONSVC_EVENT_BATCH (-event-batch): must be 1 to 4096, got 0"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_METRICS_LISTEN": "nohost"}, nil, "SESSIONSVC_METRICS_LISTEN (-metrics-listen)"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_REDIS_CLUSTER": "true", "REDIS_URL": "redis://10.0.0.1:6379?addr=10.0.0.2:6379&pool=9"}, nil,
			"REDIS_URL (-redis-url): redis: unexpected option: pool"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_REDIS_CLUSTER": "maybe"}, nil, `SESSIONSVC_REDIS_CLUSTER: invalid value "maybe"`},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_REDIS_CLUSTER": "true", "REDIS_URL": "redis://10.0.0.1:6379/2"}, nil,
			"REDIS_URL (-redis-url): database 2: a Redis Cluster has database 0 only"},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "REDIS_URL": "redis://app:s3cret-pass@redis:63 79/0"}, nil,
			`REDIS_URL (-redis-url): not a valid URL: invalid port ":63 79" after host`},
		{map[string]string{"SESSIONSVC_API_KEYS": appKey, "SESSIONSVC_METRICS_LISTEN": "127.0.0.1:8080"}, nil, "SESSIONSVC_METRICS_LISTEN (-metrics-listen): the API listens on 127.0.0.1:8080"},
	}
	for _, c := range cases {
		err := Run(context.Background(), c.args, func(k string) string { return c.env[k] }, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %v args %v: got %v, want error containing %q", c.env, c.args, err, c.want)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("env %v: the error shows the Redis password: %v", c.env, err)
		}
	}
	// A bad listen address shared by the API and the metrics is one
	// problem of each, not also a clash.
	err := Run(context.Background(), []string{"-listen", "nohost", "-metrics-listen", "nohost"},
		func(k string) string { return map[string]string{"SESSIONSVC_API_KEYS": appKey}[k] }, io.Discard, nil)
	if err == nil || strings.Contains(err.Error(), "the API listens on") || strings.Count(err.Error(), "missing port") != 2 {
		t.Errorf("-listen and -metrics-listen nohost: %v", err)
	}
	// -version prints the build and exits without error, before checking
	// the rest.
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-version"}, func(string) string { return "" }, &out, nil); err != nil || !strings.HasPrefix(out.String(), "sessionsvc ") {
		t.Fatalf("-version: %v %q", err, out.String())
	}
}

// -metrics-listen serves /metrics on a listener of its own, and the API
// listener no longer does.
func TestMetricsListener(t *testing.T) {
	ns, _ := testenv.NATS(t)
	s := start(t, ns.ClientURL(), "unused", "-store", "memory", "-metrics-listen", "127.0.0.1:0")
	s.login(t, "alice")
	var addr string
	for line := range strings.SplitSeq(s.log.String(), "\n") {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "metrics listening" {
			addr = l.Addr
		}
	}
	if addr == "" {
		t.Fatalf("no metrics listener logged:\n%s", s.log.String())
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("http://" + addr + "/metrics")
	for _, m := range []string{"sessionmon_sessions_created_total 1", "sessionmon_build_info{", "sessionmon_http_requests_total"} {
		if code != 200 || !strings.Contains(body, m) {
			t.Errorf("metrics listener: %d, lacks %q", code, m)
		}
	}
	if code, _ := get(s.url + "/metrics"); code != http.StatusNotFound {
		t.Errorf("the API listener answers /metrics with %d, want 404", code)
	}
	if code, _ := get("http://" + addr + "/v1/sessions"); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Errorf("the metrics listener answers the API: %d", code)
	}
	if code, out := s.call(t, "GET", "/readyz", "", nil); code != 200 {
		t.Errorf("readyz on the API listener: %d %v", code, out)
	}
}

// A session nobody touches again still gets its session.expired event.
func TestSweeperExpiresIdleSessions(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	ns, nc := testenv.NATS(t)
	s := start(t, ns.ClientURL(), prefix, "-idle-timeout", "1s")
	s.login(t, "idle-user")
	waitStream(t, nc, 2)
	evs := streamEvents(t, nc)
	if evs[1].Type != events.SessionExpired || evs[1].Data.Reason != "idle_timeout" || evs[1].Data.Actor != "sweeper" {
		t.Fatalf("second event %+v", evs[1])
	}
}

// With Redis down the service fails closed: 503, never a valid session.
func TestRedisDownAnswers503(t *testing.T) {
	ns, _ := testenv.NATS(t)
	env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "NATS_URL": ns.ClientURL(), "SESSIONSVC_API_KEYS": appKey}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	go func() {
		_ = Run(ctx, []string{"-listen", "127.0.0.1:0"}, func(k string) string { return env[k] }, io.Discard, func(a string) { addr <- a })
	}()
	s := &service{url: "http://" + <-addr}
	tok := "00AAAAAAAAAAAAAAAAAAAAAA." + strings.Repeat("A", 43)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/sessions", map[string]string{"user_id": "a", "ip": "192.0.2.1"}},
		{"POST", "/v1/sessions/validate", map[string]string{"token": tok, "ip": "192.0.2.1"}},
		{"POST", "/v1/sessions/logout", map[string]string{"token": tok}},
		{"GET", "/readyz", nil},
	} {
		code, out := s.call(t, c.method, c.path, appKey, c.body)
		if code != 503 {
			t.Errorf("%s %s: %d %v, want 503", c.method, c.path, code, out)
		}
	}
}

// outboxDepth counts the events left in the outboxes of a key prefix.
func outboxDepth(rdb *redis.Client, prefix string) int64 {
	var depth int64
	for p := range events.Partitions {
		depth += rdb.XLen(context.Background(), fmt.Sprintf("%s:{%02d}:o", prefix, p)).Val()
	}
	return depth
}

// -store memory runs the service with no Redis: the same API, events to
// JetStream through the in-memory outbox.
func TestMemoryStore(t *testing.T) {
	ns, nc := testenv.NATS(t)
	s := start(t, ns.ClientURL(), "unused", "-store", "memory", "-redis-url", "redis://127.0.0.1:1/0")
	tok := s.login(t, "alice")
	if code := s.validate(t, tok); code != 200 {
		t.Fatalf("validate: %d", code)
	}
	code, out := s.call(t, "GET", "/readyz", "", nil)
	if code != 200 || out["memory"] != "ok" {
		t.Fatalf("readyz: %d %v", code, out)
	}
	waitStream(t, nc, 2)
	evs := streamEvents(t, nc)
	if evs[0].Type != events.SessionCreated || evs[1].Type != events.SessionAccessed {
		t.Fatalf("events %v %v", evs[0].Type, evs[1].Type)
	}
}
