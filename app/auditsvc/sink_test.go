package auditsvc

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// memSink is a Sink in memory: written messages by stream; Prepare fails
// a number of times first.
type memSink struct {
	mu         sync.Mutex
	failFirst  int
	prepares   int
	written    map[string][]string // stream: subjects
	pingFailed bool
}

func (s *memSink) batch(stream string) eventbus.AuditBatch { return &memBatch{s: s, stream: stream} }

func (s *memSink) NewEventBatch() eventbus.AuditBatch { return s.batch(events.StreamName) }
func (s *memSink) NewAlertBatch() eventbus.AuditBatch { return s.batch(events.AlertStreamName) }

func (s *memSink) Prepare(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prepares++
	if s.prepares <= s.failFirst {
		return errors.New("not yet")
	}
	return nil
}

func (s *memSink) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pingFailed {
		return errors.New("down")
	}
	return nil
}

func (s *memSink) subjects(stream string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.written[stream]...)
}

type memBatch struct {
	s        *memSink
	stream   string
	subjects []string
}

func (b *memBatch) Add(subject string, data []byte) error {
	if !strings.HasPrefix(string(data), "{") {
		return errors.New("not JSON")
	}
	b.subjects = append(b.subjects, subject)
	return nil
}
func (b *memBatch) Len() int { return len(b.subjects) }
func (b *memBatch) Reset()   { b.subjects = nil }
func (b *memBatch) Write(ctx context.Context) error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.s.written == nil {
		b.s.written = map[string][]string{}
	}
	b.s.written[b.stream] = append(b.s.written[b.stream], b.subjects...)
	return nil
}

// TestServeWithSink runs the audit writer with an injected sink: ClickHouse
// is not opened (its URL points nowhere), Prepare is retried until it
// succeeds, both streams reach the sink, /readyz names it "store", and
// Listening is told the address.
func TestServeWithSink(t *testing.T) {
	srv, nc := testenv.NATS(t)
	vars := map[string]string{"NATS_URL": srv.ClientURL(), "CLICKHOUSE_URL": "clickhouse://127.0.0.1:1/nowhere?dial_timeout=100ms"}
	cfg, err := ParseServeConfig([]string{"-listen", "127.0.0.1:0", "-batch-interval", "50ms", "-log-level", "debug"},
		func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{failFirst: 2}
	log := &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, log, Options{Sink: sink, Listening: func(a string) { addr <- a }}) }()
	t.Cleanup(func() { cancel(); <-done })
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("Serve: %v\n%s", err, log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("not listening\n%s", log.String())
	}
	eventually(t, "ready", 20*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	_, body := get(t, base+"/readyz")
	for _, want := range []string{`"store":"ok"`, `"schema":"prepared"`, `"consumer_sessions":"reading"`} {
		if !strings.Contains(body, want) {
			t.Errorf("readyz %s lacks %s", body, want)
		}
	}
	if strings.Contains(body, "clickhouse") {
		t.Errorf("readyz names ClickHouse: %s", body)
	}
	if !strings.Contains(log.String(), "cannot prepare the audit store; retrying") {
		t.Errorf("no retry of Prepare in the log:\n%s", log.String())
	}

	e := &env{nc: nc}
	evs := sessionEvents(3, time.Now().Add(-time.Minute))
	e.publish(t, evs)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.NewAlertPublisher(js, "detector").PublishAction(context.Background(),
		events.Action{ID: "ac-sink", Time: time.Now(), Kind: events.KindReview, Actor: "rita", Action: "resolve", AlertID: "al-1", UserID: "u1", Result: "done"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both streams in the sink", 20*time.Second, func() bool {
		return len(sink.subjects(events.StreamName)) == len(evs) && len(sink.subjects(events.AlertStreamName)) == 1
	})

	sink.mu.Lock()
	sink.pingFailed = true
	sink.mu.Unlock()
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, `"store":"down"`) {
		t.Errorf("readyz with the store down: %d %s", code, body)
	}
	_, m := get(t, base+"/metrics")
	if strings.Contains(m, "sessionmon_audit_clickhouse") {
		t.Error("ClickHouse metrics with an injected sink")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	done <- nil // for the cleanup
}

// TestServeWithSinkRefusesPseudonymization: the sink, not Serve, decides
// what is kept of addresses, so a configuration asking for pseudonyms is
// refused rather than silently storing addresses.
func TestServeWithSinkRefusesPseudonymization(t *testing.T) {
	env := map[string]string{"AUDITOR_PSEUDONYMIZE_IPS": "true", "AUDITOR_IP_KEY": strings.Repeat("k", 32)}
	cfg, err := ParseServeConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = Serve(context.Background(), cfg, io.Discard, Options{Sink: &memSink{}})
	if err == nil || !strings.Contains(err.Error(), "AUDITOR_PSEUDONYMIZE_IPS") {
		t.Fatalf("Serve: %v", err)
	}
	if err := Serve(context.Background(), nil, io.Discard, Options{}); err == nil {
		t.Fatal("Serve without a configuration")
	}
}
