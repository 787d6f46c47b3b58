package sessions

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionmon/sessionmon/events"
)

// Input limits.
const (
	MaxUserIDLen     = 256
	MaxUserAgentLen  = 1024
	MaxPathLen       = 2048
	MaxReasonLen     = 256
	MaxAttributes    = 32
	MaxAttrKeyLen    = 64
	MaxAttrValueLen  = 1024
	maxRuleLen       = 128
	defaultEndReason = "terminated"
)

// Service is the session service: it checks input, mints tokens and applies
// the policy; the Store makes each change atomic with its event.
type Service struct {
	store  Store
	policy Policy
	now    func() time.Time
}

// NewService returns a service over store with policy p. now is the clock;
// nil means time.Now.
func NewService(store Store, p Policy, now func() time.Time) (*Service, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, policy: p, now: now}, nil
}

// Policy returns the service's policy.
func (s *Service) Policy() Policy { return s.policy }

func (s *Service) op(c Caller) Op {
	return Op{Now: s.now().Truncate(time.Millisecond), EventID: events.NewID(), Actor: c.Name, Owner: c.owner()}
}

// CreateRequest asks for a new session after a successful login.
type CreateRequest struct {
	UserID    string
	IP        string
	UserAgent string
	// ReplaceToken is the pre-login or pre-re-auth token to end first, so
	// that a fixated or stale token never becomes the logged-in one.
	ReplaceToken Token
	Attributes   map[string]string
}

// Issued is a session with its new token.
type Issued struct {
	Session Session
	Token   Token
}

// Create starts a session. A replace_token session of the caller's is ended
// first (as replaced); the new session always gets a fresh ID, token and
// CSRF token, which is what defeats fixation.
func (s *Service) Create(ctx context.Context, c Caller, r CreateRequest) (*Issued, error) {
	if err := checkUserID("user_id", r.UserID); err != nil {
		return nil, err
	}
	ip, err := CheckIP("ip", r.IP)
	if err != nil {
		return nil, err
	}
	if err := checkText("user_agent", r.UserAgent, MaxUserAgentLen); err != nil {
		return nil, err
	}
	if err := checkAttributes(r.Attributes); err != nil {
		return nil, err
	}
	op := s.op(c)
	var replaced string
	if r.ReplaceToken != "" {
		sid, h, ok := ParseToken(r.ReplaceToken)
		if ok {
			err := s.store.End(ctx, End{Op: op, SessionID: sid, SecretHash: &h, As: StateReplaced, Reason: "replaced"})
			switch {
			case err == nil:
				replaced = sid
			case errors.Is(err, ErrNotFound), errors.Is(err, ErrRevoked), errors.Is(err, ErrExpired),
				errors.Is(err, ErrForbidden):
				// Nothing of this app's to end (another app's cookie on a
				// shared host is not ours to end): the login goes on, with
				// a new token either way.
			default:
				return nil, err
			}
		}
		op.EventID = events.NewID()
	}
	tok, sid, h := newToken(events.PartitionOf(r.UserID))
	now := op.Now
	sess := Session{
		ID:            sid,
		UserID:        r.UserID,
		App:           c.Name,
		IP:            ip,
		UserAgent:     r.UserAgent,
		CreatedAt:     now,
		LastSeenAt:    now,
		ExpiresAt:     now.Add(s.policy.AbsoluteTimeout),
		IdleExpiresAt: minTime(now.Add(s.policy.IdleTimeout), now.Add(s.policy.AbsoluteTimeout)),
		State:         StateActive,
		Attributes:    r.Attributes,
		CSRFToken:     newCSRFToken(),
	}
	if _, err := s.store.Create(ctx, NewSession{Op: op, Session: sess, SecretHash: h, Policy: s.policy, Replaced: replaced}); err != nil {
		return nil, err
	}
	return &Issued{Session: sess, Token: tok}, nil
}

// AccessRequest is a request made with a session token.
type AccessRequest struct {
	Token     Token
	IP        string
	UserAgent string
	// CSRFToken, when given, must match the session's (403 otherwise).
	CSRFToken string
	Path      string
}

func (s *Service) access(c Caller, r AccessRequest) (Access, error) {
	if r.Token == "" {
		return Access{}, Invalid("token", "required")
	}
	ip, err := CheckIP("ip", r.IP)
	if err != nil {
		return Access{}, err
	}
	if err := checkText("user_agent", r.UserAgent, MaxUserAgentLen); err != nil {
		return Access{}, err
	}
	if err := checkText("path", r.Path, MaxPathLen); err != nil {
		return Access{}, err
	}
	if err := checkText("csrf_token", r.CSRFToken, 256); err != nil {
		return Access{}, err
	}
	sid, h, ok := ParseToken(r.Token)
	if !ok {
		return Access{}, ErrNotFound
	}
	return Access{Op: s.op(c), SessionID: sid, SecretHash: h, IP: ip, UserAgent: r.UserAgent, Path: r.Path, CSRFToken: r.CSRFToken}, nil
}

// Validate checks a token and slides the session's idle expiry.
func (s *Service) Validate(ctx context.Context, c Caller, r AccessRequest) (*Session, error) {
	a, err := s.access(c, r)
	if err != nil {
		return nil, err
	}
	return s.store.Access(ctx, a)
}

// Regenerate gives a live session a new token and CSRF token (on privilege
// change); the old token is dead at once.
func (s *Service) Regenerate(ctx context.Context, c Caller, r AccessRequest) (*Issued, error) {
	a, err := s.access(c, r)
	if err != nil {
		return nil, err
	}
	tok, h := newSecret(a.SessionID)
	sess, err := s.store.Rotate(ctx, Rotation{Access: a, NewSecretHash: h, NewCSRFToken: newCSRFToken()})
	if err != nil {
		return nil, err
	}
	return &Issued{Session: *sess, Token: tok}, nil
}

// Logout destroys the token's session server-side.
func (s *Service) Logout(ctx context.Context, c Caller, t Token) error {
	if t == "" {
		return Invalid("token", "required")
	}
	sid, h, ok := ParseToken(t)
	if !ok {
		return ErrNotFound
	}
	return s.store.End(ctx, End{Op: s.op(c), SessionID: sid, SecretHash: &h, As: StateTerminated, Reason: "logout"})
}

// ListUser returns the live sessions of a user that the caller may see.
func (s *Service) ListUser(ctx context.Context, c Caller, userID string) ([]Session, error) {
	if err := checkUserID("user_id", userID); err != nil {
		return nil, err
	}
	return s.store.List(ctx, userID, c.owner(), s.now())
}

// TerminateUserSession ends one session of a user.
func (s *Service) TerminateUserSession(ctx context.Context, c Caller, userID, sid string) error {
	if err := checkUserID("user_id", userID); err != nil {
		return err
	}
	if !ValidSessionID(sid) {
		return ErrNoSuchSession
	}
	return byID(s.store.End(ctx, End{Op: s.op(c), SessionID: sid, UserID: userID, As: StateTerminated, Reason: defaultEndReason}))
}

// RevokeUser ends every session of a user (e.g. on password change) but
// except, and returns how many it ended.
func (s *Service) RevokeUser(ctx context.Context, c Caller, userID, reason, except string) (int, error) {
	if err := checkUserID("user_id", userID); err != nil {
		return 0, err
	}
	if err := checkReason(reason); err != nil {
		return 0, err
	}
	if except != "" && !ValidSessionID(except) {
		return 0, Invalid("except_session_id", "not a session ID")
	}
	return s.store.EndUser(ctx, EndUser{Op: s.op(c), UserID: userID, Except: except, As: StateRevoked, Reason: reason})
}

// Revoke ends a session by ID (admin; the detector's enforcement).
func (s *Service) Revoke(ctx context.Context, c Caller, sid, reason, rule string) error {
	if err := s.checkAdminMark(c, sid, reason, rule); err != nil {
		return err
	}
	return byID(s.store.End(ctx, End{Op: s.op(c), SessionID: sid, As: StateRevoked, Reason: reason, Rule: rule}))
}

// Reauth makes the next validation of a session answer reauth_required.
func (s *Service) Reauth(ctx context.Context, c Caller, sid, reason, rule string) error {
	if err := s.checkAdminMark(c, sid, reason, rule); err != nil {
		return err
	}
	return byID(s.store.Reauth(ctx, Mark{Op: s.op(c), SessionID: sid, Reason: reason, Rule: rule}))
}

// byID maps session_not_found (a token that names nothing) to not_found
// for operations that name the session by ID.
func byID(err error) error {
	if errors.Is(err, ErrNotFound) {
		return ErrNoSuchSession
	}
	return err
}

func (s *Service) checkAdminMark(c Caller, sid, reason, rule string) error {
	if !c.Admin {
		return &Error{Code: CodeForbidden, Message: "admin API key required"}
	}
	if err := checkReason(reason); err != nil {
		return err
	}
	if err := checkText("rule", rule, maxRuleLen); err != nil {
		return err
	}
	if !ValidSessionID(sid) {
		return ErrNoSuchSession
	}
	return nil
}

// AuthEvent is a login attempt reported by an app.
type AuthEvent struct {
	Type      events.Type // auth.login_failed or auth.login_succeeded
	UserID    string
	IP        string
	UserAgent string
}

// RecordAuthEvent publishes a login attempt for brute-force detection.
func (s *Service) RecordAuthEvent(ctx context.Context, c Caller, a AuthEvent) error {
	if a.Type != events.AuthLoginFailed && a.Type != events.AuthLoginSucceeded {
		return Invalid("type", "must be login_failed or login_succeeded")
	}
	if err := checkUserID("user_id", a.UserID); err != nil {
		return err
	}
	ip, err := CheckIP("ip", a.IP)
	if err != nil {
		return err
	}
	if err := checkText("user_agent", a.UserAgent, MaxUserAgentLen); err != nil {
		return err
	}
	op := s.op(c)
	return s.store.Append(ctx, events.Event{
		ID: op.EventID, Type: a.Type, Source: EventSource, Time: op.Now,
		Data: events.Data{UserID: a.UserID, App: c.Name, IP: ip, UserAgent: a.UserAgent, Actor: c.Name},
	})
}

// EventSource is the CloudEvents source of the session service's events.
const EventSource = "sessionsvc"

// CheckIP parses an IP address and returns its canonical form.
func CheckIP(field, s string) (string, error) {
	if s == "" {
		return "", Invalid(field, "required")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", Invalid(field, "not an IP address")
	}
	// Most addresses come in canonical form: keep the caller's string
	// rather than allocate the same one again.
	var buf [64]byte
	if c := a.Unmap().AppendTo(buf[:0]); string(c) != s {
		return string(c), nil
	}
	return s, nil
}

func checkUserID(field, s string) error {
	if s == "" {
		return Invalid(field, "required")
	}
	return checkText(field, s, MaxUserIDLen)
}

func checkReason(s string) error {
	if s == "" {
		return Invalid("reason", "required")
	}
	return checkText("reason", s, MaxReasonLen)
}

// checkText rejects over-long, non-UTF-8 and control-character input.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return Invalid(field, "longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return Invalid(field, "not valid UTF-8")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Invalid(field, "contains control characters")
	}
	return nil
}

func checkAttributes(m map[string]string) error {
	if len(m) > MaxAttributes {
		return Invalid("attributes", "more than %d entries", MaxAttributes)
	}
	for k, v := range m {
		if k == "" {
			return Invalid("attributes", "empty key")
		}
		if err := checkText("attributes", k, MaxAttrKeyLen); err != nil {
			return err
		}
		if err := checkText("attributes."+k, v, MaxAttrValueLen); err != nil {
			return err
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
