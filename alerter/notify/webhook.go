package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/events"
)

// Headers of webhook requests.
const (
	// SignatureHeader is "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" keyed with the secret>". Receivers recompute it, compare
	// in constant time, and refuse timestamps too far from their clock
	// (Verify does both).
	SignatureHeader = "Sessionmon-Signature"
	// DeliveryHeader is the delivery ID: the same on every retry of one
	// notification, so receivers can drop repeats.
	DeliveryHeader = "Sessionmon-Delivery"
	// EventHeader is the payload's type.
	EventHeader = "Sessionmon-Event"
)

// Payload types.
const (
	EventOpened    = "incident.opened"
	EventEscalated = "incident.escalated"
)

// WebhookPayload is the JSON body of a webhook notification.
type WebhookPayload struct {
	Type       string                  `json:"type"`
	DeliveryID string                  `json:"delivery_id"`
	Time       time.Time               `json:"time"`
	Incident   alerter.IncidentSummary `json:"incident"`
	// URL is the incident's page in the review console, if configured.
	URL string `json:"url,omitempty"`
	// Alert is the latest alert of the incident, evidence included.
	Alert events.Alert `json:"alert"`
}

// Webhook posts notifications as signed JSON.
type Webhook struct {
	url    *url.URL
	secret []byte
	hc     *http.Client
	now    func() time.Time
}

var _ alerter.Notifier = (*Webhook)(nil)

// NewWebhook returns a webhook notifier; hc nil means NewHTTPClient(10s).
func NewWebhook(u *url.URL, secret []byte, hc *http.Client) (*Webhook, error) {
	if u == nil || len(secret) == 0 {
		return nil, errors.New("webhook: URL and secret are required")
	}
	if hc == nil {
		hc = NewHTTPClient(10 * time.Second)
	}
	return &Webhook{url: u, secret: secret, hc: hc, now: time.Now}, nil
}

// Notify makes one delivery attempt.
func (w *Webhook) Notify(ctx context.Context, n alerter.Notification) error {
	now := w.now()
	typ := EventOpened
	if n.Reason == alerter.ReasonEscalated {
		typ = EventEscalated
	}
	body, err := json.Marshal(WebhookPayload{Type: typ, DeliveryID: n.DeliveryID, Time: now.UTC(), Incident: n.Incident, URL: n.URL, Alert: n.Alert})
	if err != nil {
		return alerter.Permanent(fmt.Errorf("encode: %w", err))
	}
	h := http.Header{}
	h.Set(SignatureHeader, Sign(w.secret, now, body))
	h.Set(DeliveryHeader, n.DeliveryID)
	h.Set(EventHeader, typ)
	return post(ctx, w.hc, w.url, body, h)
}

// Sign returns the signature header value of body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verification errors.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("signature timestamp out of tolerance")
)

// Verify checks a signature header against body, for receivers (and
// tests): the HMAC must match (compared in constant time) and the
// timestamp be within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
