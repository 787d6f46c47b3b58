package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionmon/sessionmon/alerter"
)

// Slack posts notifications to a Slack-compatible incoming webhook
// (Slack, Mattermost, Rocket.Chat and others accept the same payload).
type Slack struct {
	url *url.URL
	hc  *http.Client
}

var _ alerter.Notifier = (*Slack)(nil)

// NewSlack returns a Slack notifier; hc nil means NewHTTPClient(10s).
func NewSlack(u *url.URL, hc *http.Client) (*Slack, error) {
	if u == nil {
		return nil, errors.New("slack: URL is required")
	}
	if hc == nil {
		hc = NewHTTPClient(10 * time.Second)
	}
	return &Slack{url: u, hc: hc}, nil
}

// SlackPayload is an incoming-webhook message: text is the fallback shown
// in notifications, blocks the formatted message.
type SlackPayload struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is a Block Kit block (header, section or context).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a text object.
type SlackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Notify makes one delivery attempt.
func (s *Slack) Notify(ctx context.Context, n alerter.Notification) error {
	body, err := json.Marshal(SlackMessage(n))
	if err != nil {
		return alerter.Permanent(fmt.Errorf("encode: %w", err))
	}
	return post(ctx, s.hc, s.url, body, nil)
}

// SlackMessage formats a notification. Everything that comes from alerts
// (user IDs, summaries, user agents) is escaped, so that a crafted user ID
// cannot mention @channel or forge a link.
func SlackMessage(n alerter.Notification) SlackPayload {
	inc := n.Incident
	verb := "New incident"
	if n.Reason == alerter.ReasonEscalated {
		verb = "Incident escalated"
	}
	who := "user " + inc.UserID
	if inc.UserID == "" {
		who = "IP " + inc.IP
	}
	title := fmt.Sprintf("%s [%s] %s: %s", verb, strings.ToUpper(inc.Severity), inc.Rule, who)
	var b strings.Builder
	if n.Alert.Summary != "" {
		b.WriteString(escape(n.Alert.Summary))
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "*Rule:* `%s`   *Severity:* %s   *Alerts:* %d\n", escape(inc.Rule), escape(inc.Severity), inc.Count)
	if inc.UserID != "" {
		fmt.Fprintf(&b, "*User:* `%s`\n", escape(inc.UserID))
	}
	if inc.IP != "" {
		fmt.Fprintf(&b, "*IP:* `%s`\n", escape(inc.IP))
	}
	if n.Alert.Action != "" && n.Alert.Action != "alert" {
		fmt.Fprintf(&b, "*Action:* %s (%s)\n", escape(n.Alert.Action), escape(n.Alert.ActionResult))
	}
	if n.URL != "" {
		fmt.Fprintf(&b, "<%s|Review in the console>", escapeURL(n.URL))
	}
	return SlackPayload{
		Text: clip(escape(title), 300),
		Blocks: []SlackBlock{
			{Type: "header", Text: &SlackText{Type: "plain_text", Text: clip(title, 150)}},
			{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: clip(b.String(), 3000)}},
			{Type: "context", Elements: []SlackText{{Type: "mrkdwn", Text: clip(fmt.Sprintf("incident %s · first %s · last %s",
				escape(inc.ID), inc.FirstSeen.UTC().Format(time.RFC3339), inc.LastSeen.UTC().Format(time.RFC3339)), 2000)}}},
		},
	}
}

// escape escapes the three characters Slack's mrkdwn gives meaning to.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// escapeURL keeps a link's URL from closing the <url|text> syntax.
func escapeURL(s string) string {
	return strings.NewReplacer("|", "%7C", ">", "%3E", "<", "%3C").Replace(s)
}

// clip cuts s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
