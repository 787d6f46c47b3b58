package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/alerter/alertertest"
	"github.com/sessionmon/sessionmon/alerter/notify"
)

var secret = []byte("webhook-secret-0123456789abcdef")

// receiver is a webhook receiver answering with the statuses it is given,
// then 204, and recording every request.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	headers  map[string]string
	reqs     []received
}

type received struct {
	header http.Header
	body   []byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, received{req.Header.Clone(), body})
	status := http.StatusNoContent
	if len(r.statuses) > 0 {
		status, r.statuses = r.statuses[0], r.statuses[1:]
	}
	for k, v := range r.headers {
		w.Header().Set(k, v)
	}
	r.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte("nope"))
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

func serve(t *testing.T, h http.Handler) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/hooks/sessionmon")
	return u
}

func notification() alerter.Notification {
	a := alertertest.TravelAlert("a1", "alice", time.Now().UTC().Truncate(time.Second))
	inc := alerter.NewIncident(a, time.Now())
	return alerter.Notification{DeliveryID: "d-1", Reason: alerter.ReasonOpened, Incident: inc.Summary(), Alert: a,
		URL: "https://alerts.example/alerts/a1"}
}

func TestWebhookSignedPayload(t *testing.T) {
	rcv := &receiver{}
	w, err := notify.NewWebhook(serve(t, rcv), secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(context.Background(), notification()); err != nil {
		t.Fatal(err)
	}
	r := rcv.got()[0]
	if err := notify.Verify(secret, r.header.Get(notify.SignatureHeader), r.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if r.header.Get(notify.DeliveryHeader) != "d-1" || r.header.Get(notify.EventHeader) != notify.EventOpened ||
		r.header.Get("Content-Type") != "application/json" || r.header.Get("User-Agent") != notify.UserAgent {
		t.Fatalf("headers: %v", r.header)
	}
	var p notify.WebhookPayload
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	ev := p.Alert.Evidence
	if p.Type != notify.EventOpened || p.DeliveryID != "d-1" || p.Incident.UserID != "alice" || p.Incident.Severity != "high" ||
		p.URL != "https://alerts.example/alerts/a1" || len(ev.Events) != 2 || ev.Events[0].City != "Paris" || ev.SpeedKmh != 16920 {
		t.Fatalf("payload: %+v", p)
	}

	// What receivers must refuse.
	sig := r.header.Get(notify.SignatureHeader)
	if err := notify.Verify(secret, sig, append(r.body, ' '), time.Now(), 5*time.Minute); !errors.Is(err, notify.ErrBadSignature) {
		t.Fatalf("tampered body: %v", err)
	}
	if err := notify.Verify([]byte("another-secret-0123456789abcdef"), sig, r.body, time.Now(), 5*time.Minute); !errors.Is(err, notify.ErrBadSignature) {
		t.Fatalf("other secret: %v", err)
	}
	if err := notify.Verify(secret, sig, r.body, time.Now().Add(10*time.Minute), 5*time.Minute); !errors.Is(err, notify.ErrStale) {
		t.Fatalf("replayed 10 min later: %v", err)
	}
	if err := notify.Verify(secret, "v1=abc", r.body, time.Now(), 5*time.Minute); !errors.Is(err, notify.ErrBadSignature) {
		t.Fatalf("no timestamp: %v", err)
	}
}

func TestSignKnownVector(t *testing.T) {
	// HMAC-SHA256("secret", "1700000000.{}"), computed independently with
	// printf 1700000000.{} | openssl dgst -sha256 -hmac secret.
	got := notify.Sign([]byte("secret"), time.Unix(1700000000, 0), []byte("{}"))
	want := "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestAnswerClassification(t *testing.T) {
	cases := []struct {
		status    int
		header    map[string]string
		permanent bool
	}{
		{http.StatusInternalServerError, nil, false},
		{http.StatusBadGateway, nil, false},
		{http.StatusRequestTimeout, nil, false},
		{http.StatusTooManyRequests, map[string]string{"Retry-After": "7"}, false},
		{http.StatusServiceUnavailable, nil, false},
		{http.StatusBadRequest, nil, true},
		{http.StatusUnauthorized, nil, true},
		{http.StatusNotFound, nil, true},
		{http.StatusGone, nil, true},
		{http.StatusFound, map[string]string{"Location": "https://elsewhere.example/"}, true}, // not followed
	}
	for _, c := range cases {
		rcv := &receiver{statuses: []int{c.status}, headers: c.header}
		w, _ := notify.NewWebhook(serve(t, rcv), secret, nil)
		err := w.Notify(context.Background(), notification())
		if err == nil || alerter.IsPermanent(err) != c.permanent {
			t.Errorf("%d: err %v, permanent %v, want permanent %v", c.status, err, alerter.IsPermanent(err), c.permanent)
		}
		if c.status == http.StatusTooManyRequests {
			r := alerter.Retry{Attempts: 3, Initial: time.Millisecond, Max: time.Minute}
			if d := r.Delay(1, err); d != 7*time.Second {
				t.Errorf("429 Retry-After 7: delay %v", d)
			}
		}
		if len(rcv.got()) != 1 {
			t.Errorf("%d: %d requests", c.status, len(rcv.got()))
		}
	}
}

func TestErrorsDoNotCarryTheURL(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u, _ := url.Parse("http://" + addr + "/services/T000/B000/XXXXsecretXXXX")
	s, _ := notify.NewSlack(u, nil)
	err = s.Notify(context.Background(), notification())
	if err == nil || alerter.IsPermanent(err) {
		t.Fatalf("connection refused: %v (must be retried)", err)
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "services") {
		t.Fatalf("the error leaks the URL: %v", err)
	}
}

func TestSlackMessage(t *testing.T) {
	rcv := &receiver{statuses: []int{200}}
	s, _ := notify.NewSlack(serve(t, rcv), nil)
	n := notification()
	n.Incident.UserID = "<!channel> mallory"
	n.Alert.Summary = "x <https://evil.example|click> & more"
	n.Reason = alerter.ReasonEscalated
	if err := s.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	var p notify.SlackPayload
	if err := json.Unmarshal(rcv.got()[0].body, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Blocks) != 3 || p.Blocks[0].Type != "header" || p.Blocks[1].Text.Type != "mrkdwn" {
		t.Fatalf("blocks: %+v", p.Blocks)
	}
	body := p.Blocks[1].Text.Text
	for _, bad := range []string{"<!channel>", "<https://evil.example|click>"} {
		if strings.Contains(body, bad) || strings.Contains(p.Text, bad) {
			t.Fatalf("unescaped %q in %q / %q", bad, body, p.Text)
		}
	}
	for _, want := range []string{"&lt;!channel&gt; mallory", "&amp; more", "<https://alerts.example/alerts/a1|Review in the console>"} {
		if !strings.Contains(body, want) {
			t.Fatalf("message lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasPrefix(p.Text, "Incident escalated [HIGH] impossible-travel") {
		t.Fatalf("text: %q", p.Text)
	}
}

// TestAlerterRetriesWebhook runs the alerter with a real webhook against
// a receiver that fails twice: the third attempt delivers, every attempt
// carries the same delivery ID and a valid signature.
func TestAlerterRetriesWebhook(t *testing.T) {
	rcv := &receiver{statuses: []int{503, 500}}
	hook, _ := notify.NewWebhook(serve(t, rcv), secret, nil)
	chatRcv := &receiver{statuses: []int{400}}
	chat, _ := notify.NewSlack(serve(t, chatRcv), nil)
	router, err := alerter.NewRouter(map[string]alerter.Notifier{"soc": hook, "chat": chat},
		map[string][]string{"high": {"soc", "chat"}})
	if err != nil {
		t.Fatal(err)
	}
	store := alertertest.NewMemStore()
	svc, err := alerter.New(alerter.Config{Store: store, Router: router, Actions: &alertertest.Actions{},
		Retry: alerter.Retry{Attempts: 5, Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: alerter.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if err := svc.HandleAlert(ctx, alertertest.TravelAlert("a1", "alice", time.Now())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		inc, err := svc.Get(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		var soc, slack alerter.Delivery
		for _, d := range inc.Deliveries {
			if d.Notifier == "soc" {
				soc = d
			} else {
				slack = d
			}
		}
		if soc.Status == alerter.DeliverySent && slack.Status == alerter.DeliveryFailed {
			if soc.Attempts != 3 || slack.Attempts != 1 || !strings.Contains(slack.LastError, "400 Bad Request") {
				t.Fatalf("deliveries: %+v %+v", soc, slack)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not done: %+v", inc.Deliveries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	reqs := rcv.got()
	if len(reqs) != 3 {
		t.Fatalf("%d webhook requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if err := notify.Verify(secret, r.header.Get(notify.SignatureHeader), r.body, time.Now(), time.Minute); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if r.header.Get(notify.DeliveryHeader) != reqs[0].header.Get(notify.DeliveryHeader) {
			t.Fatalf("attempt %d has another delivery ID", i)
		}
	}
}
