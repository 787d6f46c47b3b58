// Package client is a Go client of the sessionmon session service's HTTP
// JSON API, and net/http middleware that guards an app's handlers with it.
//
// A Client makes one call per API operation. Session tokens are plain
// strings here; the package sends them only in JSON request bodies (never
// in a URL), never logs them, and never puts them in an error.
//
// Errors answered by the service are *Error values. Classify them with
// IsUnauthenticated, IsReauthRequired and IsUnavailable rather than by
// status. An app must fail closed: when IsUnavailable is true, the
// session could not be checked and the request must be refused.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds each call made with the default HTTP client.
const DefaultTimeout = 5 * time.Second

// maxResponse is the most of a response body the client reads.
const maxResponse = 4 << 20

// Client calls the session service. It is safe for concurrent use.
type Client struct {
	baseURL string // without a trailing slash
	apiKey  string
	hc      *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc. The default
// client has a DefaultTimeout timeout and does not follow redirects (a
// followed 307 would resend the body, and with it a session token, to the
// new location); a client given here should do the same.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// New returns a client of the service at baseURL (for example
// "https://sessions.internal:8080") that authenticates with apiKey, the
// secret part of one of the service's API keys.
func New(baseURL, apiKey string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("sessionmon client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sessionmon client: base URL %q: want http(s)://host[:port][/path]", u.Redacted())
	}
	if apiKey == "" {
		return nil, errors.New("sessionmon client: API key is empty")
	}
	c := &Client{
		baseURL: strings.TrimRight(u.String(), "/"),
		apiKey:  apiKey,
		hc: &http.Client{
			Timeout: DefaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		return nil, errors.New("sessionmon client: HTTP client is nil")
	}
	return c, nil
}

// CreateRequest asks for a new session after a successful login.
type CreateRequest struct {
	UserID    string `json:"user_id"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	// ReplaceToken is the token the browser held before logging in (or
	// before re-authenticating), if any. The service ends its session
	// first, so that a fixated or stale token never becomes the
	// logged-in one.
	ReplaceToken string            `json:"replace_token,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
}

// Issued is a new session with its token (from CreateSession and
// Regenerate). Token and Cookie are credentials: hand Cookie to the
// browser with SetCookie and do not log either. Issued redacts both when
// printed with fmt or logged with log/slog.
type Issued struct {
	Token         string    `json:"token"`
	SessionID     string    `json:"session_id"`
	UserID        string    `json:"user_id"`
	CSRFToken     string    `json:"csrf_token"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	// Cookie is the complete Set-Cookie header value carrying Token.
	Cookie string `json:"cookie"`
}

// Format prints the session ID and user, never the token.
func (i Issued) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{session %s of user %q, token [REDACTED]}", i.SessionID, i.UserID)
}

// LogValue logs the session ID and user, never the token.
func (i Issued) LogValue() slog.Value {
	return slog.GroupValue(slog.String("session_id", i.SessionID), slog.String("user_id", i.UserID))
}

// AccessRequest is a request an app received with a session token.
type AccessRequest struct {
	Token     string `json:"token"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	// CSRFToken, when not empty, must match the session's CSRF token or
	// the call fails with csrf_mismatch. When empty, it is not checked.
	CSRFToken string `json:"csrf_token,omitempty"`
	// Path is the path requested, recorded with the access.
	Path string `json:"path,omitempty"`
}

// Session is a session as the service returns it. It never holds the token.
type Session struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	// App is the name of the API key that created the session.
	App string `json:"app"`
	// IP and UserAgent are those of the last validated request.
	IP            string    `json:"ip"`
	UserAgent     string    `json:"user_agent"`
	CreatedAt     time.Time `json:"created_at"`
	LastSeenAt    time.Time `json:"last_seen_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	// State is "active" or "reauth_required" for a live session.
	State      string            `json:"state"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// CSRFToken is the token to render into forms or hand to scripts for
	// the X-CSRF-Token header. Only Validate returns it.
	CSRFToken string `json:"csrf_token,omitempty"`
}

// LoginEvent is a login attempt, reported for brute-force detection.
type LoginEvent struct {
	Failed    bool
	UserID    string
	IP        string
	UserAgent string
}

// CreateSession starts a session for a user who has just logged in.
func (c *Client) CreateSession(ctx context.Context, r CreateRequest) (*Issued, error) {
	var out Issued
	if err := c.do(ctx, http.MethodPost, "/v1/sessions", r.ReplaceToken, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Validate checks a session token and slides the session's idle expiry.
func (c *Client) Validate(ctx context.Context, r AccessRequest) (*Session, error) {
	var out Session
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/validate", r.Token, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Regenerate gives a live session a new token and CSRF token, for example
// after a privilege change. The old token stops working at once.
func (c *Client) Regenerate(ctx context.Context, r AccessRequest) (*Issued, error) {
	var out Issued
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/regenerate", r.Token, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Logout ends the session of token. Logging out a session that has
// already ended is not an error.
func (c *Client) Logout(ctx context.Context, token string) error {
	body := struct {
		Token string `json:"token"`
	}{token}
	return c.do(ctx, http.MethodPost, "/v1/sessions/logout", token, body, nil)
}

// ListUserSessions returns the live sessions of a user that the API key
// may see: an app key sees its own app's sessions, an admin key all. The
// service lists neither attributes nor CSRF tokens; UserID is set to
// userID.
func (c *Client) ListUserSessions(ctx context.Context, userID string) ([]Session, error) {
	seg, err := segment("user_id", userID)
	if err != nil {
		return nil, err
	}
	var out struct {
		Sessions []Session `json:"sessions"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+seg+"/sessions", "", nil, &out); err != nil {
		return nil, err
	}
	for i := range out.Sessions {
		out.Sessions[i].UserID = userID
	}
	return out.Sessions, nil
}

// TerminateSession ends one session of a user ("log out that device").
func (c *Client) TerminateSession(ctx context.Context, userID, sessionID string) error {
	u, err := segment("user_id", userID)
	if err != nil {
		return err
	}
	s, err := segment("session_id", sessionID)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/users/"+u+"/sessions/"+s, "", nil, nil)
}

// RevokeUserSessions ends every session of a user, for example after a
// password change, except exceptSessionID when it is not empty (the
// session that made the change). It returns how many sessions it ended.
func (c *Client) RevokeUserSessions(ctx context.Context, userID, reason, exceptSessionID string) (int, error) {
	seg, err := segment("user_id", userID)
	if err != nil {
		return 0, err
	}
	body := struct {
		Reason          string `json:"reason"`
		ExceptSessionID string `json:"except_session_id,omitempty"`
	}{reason, exceptSessionID}
	var out struct {
		Revoked int `json:"revoked"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/users/"+seg+"/sessions/revoke", "", body, &out); err != nil {
		return 0, err
	}
	return out.Revoked, nil
}

// markBody is the body of RevokeSession and ForceReauth.
type markBody struct {
	Reason string `json:"reason"`
	Rule   string `json:"rule,omitempty"`
}

// RevokeSession ends a session by ID. It needs an admin API key; rule
// names the detection rule that triggered it, if any.
func (c *Client) RevokeSession(ctx context.Context, sessionID, reason, rule string) error {
	seg, err := segment("session_id", sessionID)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v1/sessions/"+seg+"/revoke", "", markBody{reason, rule}, nil)
}

// ForceReauth makes every further validation of a session fail with
// reauth_required until the user logs in again. It needs an admin API key.
func (c *Client) ForceReauth(ctx context.Context, sessionID, reason, rule string) error {
	seg, err := segment("session_id", sessionID)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v1/sessions/"+seg+"/reauth", "", markBody{reason, rule}, nil)
}

// ReportLogin reports a login attempt, failed or successful.
func (c *Client) ReportLogin(ctx context.Context, e LoginEvent) error {
	typ := "login_succeeded"
	if e.Failed {
		typ = "login_failed"
	}
	body := struct {
		Type      string `json:"type"`
		UserID    string `json:"user_id"`
		IP        string `json:"ip"`
		UserAgent string `json:"user_agent"`
	}{typ, e.UserID, e.IP, e.UserAgent}
	return c.do(ctx, http.MethodPost, "/v1/auth-events", "", body, nil)
}

// segment escapes one path segment. An empty segment, "." or ".." would
// change the route, so it is refused here with the error the service
// would give.
func segment(field, s string) (string, error) {
	if s == "" || s == "." || s == ".." {
		return "", &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: field + ": required"}
	}
	return url.PathEscape(s), nil
}

// do sends one API call: in as the JSON body (when not nil), and a 2xx
// answer decoded into out (when not nil). secret is the token the request
// carries, if any; it is scrubbed from anything that reaches an error.
func (c *Client) do(ctx context.Context, method, path, secret string, in, out any) error {
	op := method + " " + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("sessionmon: %s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return fmt.Errorf("sessionmon: %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The *url.Error names the URL, which holds IDs but no token.
		return fmt.Errorf("sessionmon: %s: %w", op, &transportError{err})
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("sessionmon: %s: read response: %w", op, &transportError{err})
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp.StatusCode, data, secret)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("sessionmon: %s: decode %d response: %w", op, resp.StatusCode, err)
	}
	return nil
}

// responseError builds the *Error of a non-2xx answer. A body that is not
// the service's error JSON (say, a proxy's HTML page) gives an Error with
// the status and no code.
func responseError(status int, body []byte, secret string) *Error {
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e := &Error{Status: status}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
	} else {
		e.Message = http.StatusText(status)
	}
	if secret != "" {
		// The service never echoes a token; make sure of it anyway.
		e.Message = strings.ReplaceAll(e.Message, secret, "[REDACTED]")
	}
	return e
}
