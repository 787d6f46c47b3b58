package detectorsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

func TestReplay(t *testing.T) {
	p := geotest.MustBuild(t)
	env := map[string]string{"GEOIP_CITY_DB": p.City, "GEOIP_ASN_DB": p.ASN, "GEOIP_ANONYMOUS_DB": p.Anonymous}
	var out, errOut bytes.Buffer
	dir := "../../rules/testdata/impossible-travel-across-sessions/"
	err := Run(context.Background(), []string{"replay", "-rules", dir + "rules.yaml", "-events", dir + "events.jsonl"},
		func(k string) string { return env[k] }, nil, &out, &errOut)
	if err != nil {
		t.Fatal(err, errOut.String())
	}
	var a events.Alert
	if err := json.Unmarshal(out.Bytes(), &a); err != nil || a.Rule != "impossible-travel" || a.Action != "reauth" {
		t.Fatalf("alert %s (%v)", out.String(), err)
	}
	if !strings.Contains(errOut.String(), "replayed 2 events with 1 rules") {
		t.Fatalf("summary: %s", errOut.String())
	}
}

func TestReplayErrors(t *testing.T) {
	none := func(string) string { return "" }
	cases := []struct {
		args  []string
		stdin string
		want  string
	}{
		{nil, "", "usage: detector run"},
		{[]string{"serve"}, "", `unknown command "serve"`},
		{[]string{"replay", "-rules", "/nonexistent.yaml"}, "", "rules file: open /nonexistent.yaml"},
		{[]string{"replay", "-events", "/nonexistent.jsonl"}, "", "events file: open /nonexistent.jsonl"},
		{[]string{"replay"}, "{\"specversion\":\"1.0\"}\n", `-: line 1: event: field "id": missing`},
		{[]string{"replay"}, "\n\nnot json\n", "-: line 3: event:"},
	}
	for _, c := range cases {
		err := Run(context.Background(), c.args, none, strings.NewReader(c.stdin), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	// Without a GeoIP database the geographic rules are off, with a warning.
	runCases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"DETECTOR_GROUPS": "0"}, nil, "DETECTOR_GROUPS (-groups): must be 1 to 16, got 0"},
		{map[string]string{"DETECTOR_GROUPS": "4", "DETECTOR_GROUP": "4"}, nil, "DETECTOR_GROUP (-group): must be 0 to 3 (groups-1), got 4"},
		{nil, []string{"-group", "-1"}, "DETECTOR_GROUP (-group): must be 0 to 0 (groups-1), got -1"},
		{map[string]string{"DETECTOR_GROUPS": "two"}, nil, "DETECTOR_GROUPS"},
		{map[string]string{"SESSIONSVC_URL": "http://127.0.0.1:8080"}, nil, "SESSIONSVC_API_KEY (-sessionsvc-api-key): required with SESSIONSVC_URL (-sessionsvc-url)"},
		{map[string]string{"DETECTOR_LISTEN": "nowhere"}, nil, "DETECTOR_LISTEN"},
		{map[string]string{"DETECTOR_WARMUP": "-1m"}, nil, "DETECTOR_WARMUP (-warmup): must not be negative"},
		{nil, []string{"extra"}, `unexpected argument "extra"`},
		{map[string]string{"NATS_TLS_KEY": "client.key"}, nil, "NATS_TLS_KEY (-nats-tls-key): give both the client certificate and its key (NATS_TLS_CERT (-nats-tls-cert)), or neither"},
		{map[string]string{"NATS_NKEY_SEED": "/nonexistent/detector.nk"}, nil, "NATS_NKEY_SEED (-nats-nkey-seed): "},
	}
	for _, c := range runCases {
		_, err := parseRunConfig(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run %v %v: got %v, want %q", c.env, c.args, err, c.want)
		}
	}
	if _, err := parseRunConfig(nil, none, io.Discard); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	var errOut bytes.Buffer
	if err := Run(context.Background(), []string{"replay"}, none, strings.NewReader(""), io.Discard, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "warning: no GeoIP city database") {
		t.Fatalf("no warning: %s", errOut.String())
	}
	errOut.Reset()
	if err := Run(context.Background(), []string{"run", "-version"}, none, nil, io.Discard, &errOut); err != nil || !strings.HasPrefix(errOut.String(), "detector run ") {
		t.Fatalf("-version: %v %q", err, errOut.String())
	}
}

// The detector connects to a NATS server requiring a user and password
// with them in NATS_URL, never logging the password, logs its version at
// start and exports sessionmon_build_info.
func TestNATSPasswordAndBuildInfo(t *testing.T) {
	const user, password = "detector", "detector-nats-pa55word"
	opts := testenv.NATSOptions(t.TempDir())
	opts.Username, opts.Password = user, password
	ns := testenv.StartNATS(t, opts)
	natsURL := "nats://" + user + ":" + password + "@" + strings.TrimPrefix(ns.ClientURL(), "nats://")
	cfg, err := parseRunConfig([]string{"-listen", "127.0.0.1:0", "-warmup", "0s"}, func(k string) string { return map[string]string{"NATS_URL": natsURL}[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, runHooks{listening: func(a string) { addr <- a }}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("detector: %v", err)
		}
	})
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("detector did not start: %v\n%s", err, log.String())
	}
	waitUntil(t, "the detector is ready", func() bool { return strings.Contains(get(t, base+"/readyz"), `"warmup":"done"`) })
	if m := get(t, base+"/metrics"); !strings.Contains(m, `sessionmon_build_info{go_version="go`) {
		t.Fatalf("metrics lack sessionmon_build_info:\n%s", m)
	}
	out := log.String()
	if strings.Contains(out, password) || !strings.Contains(out, `"msg":"detector starting"`) || !strings.Contains(out, `"revision":`) ||
		!strings.Contains(out, `"auth":"password"`) {
		t.Fatalf("the log shows the password, or lacks the version or the connection:\n%s", out)
	}
}

// `detector replay` reads a time range of the audit log in ClickHouse and
// raises the same alerts as from the file the events came from.
func TestReplayFromAuditLog(t *testing.T) {
	conn := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, conn)
	url := "clickhouse://" + testenv.ClickHouseAddr() + "/" + db
	store, err := clickhouse.Open(clickhouse.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	dir := "../../rules/testdata/impossible-travel-across-sessions/"
	raw, err := os.ReadFile(dir + "events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	batch := store.NewEventBatch(clickhouse.WriterOptions{})
	var first, last time.Time
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		ev, err := events.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() {
			first = ev.Time
		}
		last = ev.Time
		if err := batch.AddEvent(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Write(ctx); err != nil {
		t.Fatal(err)
	}

	p := geotest.MustBuild(t)
	env := map[string]string{"GEOIP_CITY_DB": p.City, "GEOIP_ASN_DB": p.ASN, "GEOIP_ANONYMOUS_DB": p.Anonymous, "CLICKHOUSE_URL": url}
	getenv := func(k string) string { return env[k] }
	var fromFile, fromAudit, errOut bytes.Buffer
	if err := Run(ctx, []string{"replay", "-rules", dir + "rules.yaml", "-events", dir + "events.jsonl"}, getenv, nil, &fromFile, io.Discard); err != nil {
		t.Fatal(err)
	}
	args := []string{"replay", "-rules", dir + "rules.yaml", "-from", first.Add(-time.Minute).Format(time.RFC3339), "-to", last.Add(time.Minute).Format(time.RFC3339)}
	if err := Run(ctx, args, getenv, nil, &fromAudit, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	if fromFile.Len() == 0 || fromAudit.String() != fromFile.String() {
		t.Fatalf("from the audit log:\n%s\nfrom the file:\n%s", fromAudit.String(), fromFile.String())
	}
	if !strings.Contains(errOut.String(), "replayed 2 events of the audit log") {
		t.Fatalf("summary: %s", errOut.String())
	}
	// Errors name the setting.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "-from", "yesterday"}, "-from: want an RFC 3339 time"},
		{[]string{"replay", "-from", "2026-11-22T10:00:00Z", "-to", "2026-11-22T09:00:00Z"}, "-from must be before -to"},
	} {
		if err := Run(ctx, c.args, getenv, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if err := Run(ctx, []string{"replay", "-from", "2026-11-22T10:00:00Z"}, func(string) string { return "" }, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "CLICKHOUSE_URL (-clickhouse-url) is required") {
		t.Errorf("without a URL: %v", err)
	}
}
