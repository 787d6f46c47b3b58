// Package notify holds the alerter's notifiers: a generic JSON webhook
// signed with HMAC-SHA256, and a Slack-compatible incoming webhook. Each
// makes one attempt per call; the alerter retries. Answers are classified
// for it: 2xx is delivered; 408, 425, 429 and 5xx and network errors are
// retried (honouring Retry-After); any other answer is a refusal, not
// retried. Errors never carry the URL: a Slack URL is itself a secret.
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
)

// UserAgent is sent with every notification.
const UserAgent = "sessionmon-alerter/1"

// NewHTTPClient returns the client notifiers use by default: a timeout,
// and no redirects (a followed redirect would resend the signed body
// somewhere else).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// post sends body to u and classifies the answer. headers are added.
func post(ctx context.Context, hc *http.Client, u *url.URL, body []byte, headers http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return alerter.Permanent(errors.New("cannot build the request"))
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := hc.Do(req)
	if err != nil {
		return scrub(err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	err = fmt.Errorf("answered %s", resp.Status)
	if s := printable(snippet); s != "" {
		err = fmt.Errorf("answered %s: %s", resp.Status, s)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return alerter.RetryAfter(err, d)
		}
		return err
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooEarly || resp.StatusCode >= 500:
		return err
	}
	return alerter.Permanent(err)
}

// scrub drops the URL from a transport error.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("timed out")
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("%s: %v", oe.Op, oe.Err)
	}
	return fmt.Errorf("request failed: %v", err)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date).
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// printable keeps the printable ASCII of a response snippet for an error.
func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c >= 0x20 && c < 0x7f:
			out = append(out, c)
		case c == '\n' || c == '\r' || c == '\t':
			out = append(out, ' ')
		}
	}
	return string(bytes.TrimSpace(out))
}

// FromSpecs builds the notifiers of the configuration, by name; hc nil
// means NewHTTPClient(10s).
func FromSpecs(specs []alerter.NotifierSpec, hc *http.Client) (map[string]alerter.Notifier, error) {
	out := make(map[string]alerter.Notifier, len(specs))
	for _, s := range specs {
		var n alerter.Notifier
		var err error
		switch s.Type {
		case alerter.TypeWebhook:
			n, err = NewWebhook(s.URL, s.Secret, hc)
		case alerter.TypeSlack:
			n, err = NewSlack(s.URL, hc)
		default:
			err = fmt.Errorf("unknown type %q", s.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("notifier %q: %w", s.Name, err)
		}
		out[s.Name] = n
	}
	return out, nil
}
