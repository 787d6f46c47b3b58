// Package eventbus is the NATS JetStream adapter for sessionmon events:
// the stream definitions and an ordered, acknowledged publisher.
package eventbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/cli"
)

// StreamOptions size the session event stream.
type StreamOptions struct {
	// MaxAge is how long events are kept; detectors rebuild their windows
	// from this history and the audit writer catches up within it.
	MaxAge time.Duration
	// Replicas is 1 for a single server, 3 in production clusters.
	Replicas int
	// Duplicates is the de-duplication window on the event ID
	// (Nats-Msg-Id): a relay that republishes after a failure within it
	// stores nothing twice.
	Duplicates time.Duration
	// MaxBytes bounds the stream's storage; 0 means no limit.
	MaxBytes int64
}

// DefaultStreamOptions keep a week of events on one replica.
func DefaultStreamOptions() StreamOptions {
	return StreamOptions{MaxAge: 7 * 24 * time.Hour, Replicas: 1, Duplicates: 2 * time.Minute}
}

// SessionStreamConfig is the configuration of the SESSIONS stream.
func SessionStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "sessionmon session lifecycle, access and auth events; subjects sessions.<partition>.<type>",
		Subjects:    []string{events.StreamSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    orMinusOne(o.MaxBytes),
		Replicas:    o.Replicas,
		Duplicates:  o.Duplicates,
	}
}

func orMinusOne(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// EnsureSessionStream creates or updates the SESSIONS stream.
func EnsureSessionStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, SessionStreamConfig(o))
	if err != nil {
		return nil, fmt.Errorf("jetstream: ensure stream %s: %w", events.StreamName, err)
	}
	return s, nil
}

// Publisher publishes events to JetStream in order and waits for the acks.
// Consecutive events of one subject (one partition and type) go out as one
// message, a batch of up to MaxBatch events (see events.Split).
type Publisher struct {
	js       jetstream.JetStream
	maxBatch int
	maxBytes int
}

// DefaultMaxBatch is the most events a Publisher puts in one message.
const DefaultMaxBatch = 256

// PublisherOption tunes a Publisher.
type PublisherOption func(*Publisher)

// MaxBatch sets the most events of one message; 1 publishes every event as
// a message of its own.
func MaxBatch(n int) PublisherOption {
	return func(p *Publisher) { p.maxBatch = min(max(n, 1), events.MaxBatchEvents) }
}

// NewPublisher returns a publisher on nc. The JetStream context it makes
// times out un-acked publishes after ackTimeout.
func NewPublisher(nc *nats.Conn, ackTimeout time.Duration, opts ...PublisherOption) (*Publisher, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// A batch stays well under the server's largest message (1 MiB by
	// default); a single event never comes near it (events.MaxSize).
	maxBytes := 256 << 10
	if mp := nc.MaxPayload(); mp > 0 {
		maxBytes = min(maxBytes, int(mp/2))
	}
	p := &Publisher{js: js, maxBatch: DefaultMaxBatch, maxBytes: maxBytes}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// JetStream returns the publisher's JetStream context.
func (p *Publisher) JetStream() jetstream.JetStream { return p.js }

// Publish sends evs in order and returns once JetStream acknowledged every
// one, or the first failure. Each run of consecutive events with one
// subject goes out as one message (up to MaxBatch events and a quarter of
// a MiB), so a step of the outbox relay under load is a few messages per
// partition rather than one per event.
//
// A message's Nats-Msg-Id is its event's ID, or for a batch the first
// event's ID and the number of events. After a failure the caller
// republishes the same events from the head (the relay re-reads the same
// outbox entries); they form the same messages, and the stream's
// duplicate window drops those already stored.
func (p *Publisher) Publish(ctx context.Context, evs []events.Event) error {
	futs := make([]jetstream.PubAckFuture, 0, len(evs)/4+1)
	var parts [][]byte // the encoded events of the message being made
	var carry []byte   // an event encoded for a message it did not fit in
	for i := 0; i < len(evs); {
		part, typ := events.PartitionOf(evs[i].Data.UserID), evs[i].Type
		parts = parts[:0]
		size, j := 2, i // the brackets of a batch
		for j < len(evs) && j-i < p.maxBatch {
			e := &evs[j]
			if j > i && (e.Type != typ || events.PartitionOf(e.Data.UserID) != part) {
				break
			}
			b := carry
			if b == nil {
				var err error
				if b, err = e.Encode(); err != nil {
					return fmt.Errorf("encode event %s: %w", e.ID, err)
				}
			}
			carry = nil
			if j > i && size+len(b)+1 > p.maxBytes {
				carry = b
				break
			}
			parts = append(parts, b)
			size += len(b) + 1
			j++
		}
		m := nats.NewMsg(events.Subject(part, typ))
		m.Data = events.JoinBatch(make([]byte, 0, size), parts)
		id := evs[i].ID
		if n := len(parts); n > 1 {
			id += "+" + strconv.Itoa(n)
			m.Header.Set("Content-Type", events.BatchContentType)
		} else {
			m.Header.Set("Content-Type", events.ContentType)
		}
		// No retries inside nats.go: it re-sends a message the stream was
		// not ready for on a timer of its own, which lets later messages
		// overtake it. A failure comes back here, and the caller retries
		// the batch from its head.
		f, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithRetryAttempts(0))
		if err != nil {
			return fmt.Errorf("jetstream publish: %w", err)
		}
		futs = append(futs, f)
		i = j
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("jetstream publish ack: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ConnConfig is how a program reaches NATS: the server and the means of
// securing the connection. Programs declare it as flags with environment
// fallbacks (RegisterFlags) and check it with the rest of their settings
// (Check); Connect checks it again.
type ConnConfig struct {
	// URL is the server's URL, or a comma-separated list of them. A user
	// and password (nats://user:password@host:4222) or a token
	// (nats://token@host:4222) in it authenticate the connection; they are
	// never logged. tls:// asks for TLS with the system's roots.
	URL string
	// Creds is a credentials file (a user JWT and its NKey seed, as nsc
	// and the NATS account servers write them).
	Creds string
	// NKeySeed is a file holding a user NKey seed (the server knows the
	// public key).
	NKeySeed string
	// TLSCA is a PEM file of the certificate authorities the server's
	// certificate is checked against, instead of the system's; setting it
	// requires TLS.
	TLSCA string
	// TLSCert and TLSKey are the PEM files of a client certificate and its
	// key, for servers that verify clients; both or neither. They are read
	// again at every (re)connection, so a renewed certificate is picked up.
	TLSCert, TLSKey string
}

// connSettings name ConnConfig's fields as flags and variables.
var connSettings = []struct{ flag, env, usage string }{
	{"nats-url", "NATS_URL", "NATS URL, or a comma-separated list; nats://user:password@host:port or nats://token@host:port authenticate"},
	{"nats-creds", "NATS_CREDS", "NATS credentials file (user JWT and NKey seed) (optional)"},
	{"nats-nkey-seed", "NATS_NKEY_SEED", "file holding a NATS user NKey seed (optional)"},
	{"nats-tls-ca", "NATS_TLS_CA", "PEM file of the CAs that sign the NATS server's certificate; requires TLS (optional)"},
	{"nats-tls-cert", "NATS_TLS_CERT", "PEM client certificate for NATS servers that verify clients, with -nats-tls-key (optional)"},
	{"nats-tls-key", "NATS_TLS_KEY", "PEM key of the client certificate (optional)"},
}

func (c *ConnConfig) fields() []*string {
	return []*string{&c.URL, &c.Creds, &c.NKeySeed, &c.TLSCA, &c.TLSCert, &c.TLSKey}
}

// DefaultURL is where NATS is looked for without -nats-url.
const DefaultURL = "nats://127.0.0.1:4222"

// RegisterFlags declares the settings on fs: -nats-url (NATS_URL),
// -nats-creds (NATS_CREDS), -nats-nkey-seed (NATS_NKEY_SEED),
// -nats-tls-ca (NATS_TLS_CA), -nats-tls-cert (NATS_TLS_CERT) and
// -nats-tls-key (NATS_TLS_KEY).
func (c *ConnConfig) RegisterFlags(fs *cli.FlagSet) {
	for i, p := range c.fields() {
		def := ""
		if i == 0 {
			def = DefaultURL
		}
		fs.String(p, connSettings[i].flag, connSettings[i].env, def, connSettings[i].usage)
	}
}

// setting names field i as the programs declare it.
func setting(i int) string {
	return fmt.Sprintf("%s (-%s)", connSettings[i].env, connSettings[i].flag)
}

// Check reads the files the settings name and reports every problem,
// each naming its setting: a missing URL, an unparsable one, unreadable
// or invalid files, a certificate without its key, two ways to
// authenticate.
func (c ConnConfig) Check() error {
	_, err := c.options()
	return err
}

// options checks the settings and returns the nats options they make.
func (c ConnConfig) options() ([]nats.Option, error) {
	var errs []error
	bad := func(i int, err error) { errs = append(errs, fmt.Errorf("%s: %w", setting(i), err)) }
	var opts []nats.Option
	userInURL := false
	if strings.TrimSpace(c.URL) == "" {
		bad(0, errors.New("required"))
	}
	for _, u := range splitURLs(c.URL) {
		p, err := parseURL(u)
		if err != nil {
			bad(0, err)
			continue
		}
		userInURL = userInURL || p.User != nil
	}
	switch {
	case c.Creds != "" && c.NKeySeed != "":
		bad(1, fmt.Errorf("give the credentials file or %s, not both", setting(2)))
	case (c.Creds != "" || c.NKeySeed != "") && userInURL:
		bad(0, fmt.Errorf("a user or token in the URL, and %s or %s: give one way to authenticate", setting(1), setting(2)))
	case c.Creds != "":
		// The options read the file when connecting; read it now, so
		// that a bad file fails the start.
		o := nats.GetDefaultOptions()
		if err := nats.UserCredentials(c.Creds)(&o); err != nil {
			bad(1, err)
		} else if _, err := o.UserJWT(); err != nil {
			bad(1, err)
		} else if _, err := o.SignatureCB([]byte("sessionmon")); err != nil {
			bad(1, err)
		} else {
			opts = append(opts, nats.UserCredentials(c.Creds))
		}
	case c.NKeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			bad(2, err)
		} else {
			opts = append(opts, opt)
		}
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		switch {
		case err != nil:
			bad(3, err)
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			bad(3, fmt.Errorf("%s holds no PEM certificate", c.TLSCA))
		default:
			opts = append(opts, nats.RootCAs(c.TLSCA))
		}
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		i, other := 4, 5
		if c.TLSCert == "" {
			i, other = 5, 4
		}
		bad(i, fmt.Errorf("give both the client certificate and its key (%s), or neither", setting(other)))
	case c.TLSCert != "":
		if _, err := os.Stat(c.TLSKey); err != nil {
			bad(5, err)
		} else if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			bad(4, err)
		} else {
			opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return opts, nil
}

// splitURLs splits a comma-separated list of URLs, as nats.Connect does.
func splitURLs(list string) []string {
	var out []string
	for u := range strings.SplitSeq(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// parseURL parses one server URL as nats.go does (nats:// when the scheme
// is missing). Its errors never quote the URL, which may hold a password.
func parseURL(u string) (*url.URL, error) {
	if !strings.Contains(u, "://") {
		u = "nats://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return nil, errors.New("not a URL: want nats://[user:password@]host:port, tls://host:port, or a comma-separated list")
	}
	switch p.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("scheme %q: want nats, tls, ws or wss", p.Scheme)
	}
	return p, nil
}

// RedactURL returns the URL, or list of URLs, with any password or token
// replaced by "xxxxx", for logs.
func RedactURL(list string) string {
	var out []string
	for _, u := range splitURLs(list) {
		p, err := parseURL(u)
		switch {
		case err != nil:
			out = append(out, "(unparsable URL)")
		case p.User == nil:
			out = append(out, p.String())
		default:
			if _, hasPassword := p.User.Password(); hasPassword {
				p.User = url.UserPassword(p.User.Username(), "xxxxx")
			} else {
				p.User = url.User("xxxxx") // a token
			}
			out = append(out, p.String())
		}
	}
	return strings.Join(out, ",")
}

// describe is what the connection's security is, for the log.
func (c ConnConfig) describe() []any {
	auth := "none"
	switch {
	case c.Creds != "":
		auth = "creds"
	case c.NKeySeed != "":
		auth = "nkey"
	default:
		for _, u := range splitURLs(c.URL) {
			if p, err := parseURL(u); err == nil && p.User != nil {
				auth = "token"
				if _, ok := p.User.Password(); ok {
					auth = "password"
				}
			}
		}
	}
	tlsMode := "off"
	switch {
	case c.TLSCert != "":
		tlsMode = "client-cert"
	case c.TLSCA != "":
		tlsMode = "on"
	case strings.Contains(c.URL, "tls://") || strings.Contains(c.URL, "wss://"):
		tlsMode = "on (system roots)"
	}
	return []any{"url", RedactURL(c.URL), "auth", auth, "tls", tlsMode}
}

// retryLog logs failures to connect, which nats.go reports at every
// attempt (twice a second while the server is down): a new error at once,
// the same one again every 30 seconds, with the count of attempts.
type retryLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last string
	at   time.Time
	n    int
}

func (r *retryLog) failed(msg string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if e := err.Error(); e != r.last || time.Since(r.at) >= 30*time.Second {
		r.log.Warn(msg, "err", err, "attempts", r.n)
		r.last, r.at = e, time.Now()
	}
}

func (r *retryLog) connected() {
	r.mu.Lock()
	r.last, r.n = "", 0
	r.mu.Unlock()
}

// Connect connects to NATS as a sessionmon service: named (it shows in the
// server's connection list), secured as c says, reconnecting forever (a
// refused authentication too: credentials may be fixed meanwhile), and
// logging connections, disconnections and failures to connect, with
// passwords and tokens redacted. NATS may be down at start: the
// connection is made in the background, and callers see it in Status.
func Connect(c ConnConfig, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	secure, err := c.options()
	if err != nil {
		return nil, err
	}
	fails := &retryLog{log: log}
	opts = append(append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(500 * time.Millisecond), nats.IgnoreAuthErrorAbort(),
		nats.ConnectHandler(func(nc *nats.Conn) {
			fails.connected()
			log.Info("nats connected", "url", RedactURL(nc.ConnectedUrl()))
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				log.Info("nats connection closed") // our own Close, at shutdown
				return
			}
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fails.connected()
			log.Info("nats reconnected", "url", RedactURL(nc.ConnectedUrl()))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { fails.failed("cannot connect to nats; retrying", err) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats error", "err", err, "subject", sub.Subject)
				return
			}
			fails.failed("nats error", err)
		}),
	}, secure...), opts...)
	log.Info("connecting to nats", c.describe()...)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting(0), err)
	}
	return nc, nil
}
