package simulate

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/sessionmon/sessionmon/client"
)

// Pacing of a normal user. A user acts at most once a second (reading a
// page takes longer than that), which keeps every user, and so every
// address, far below the request-burst rules' 100 requests in 10 seconds.
const (
	minThink = time.Second
	maxThink = 6 * time.Second
	// Away: after logging out or walking away, before coming back.
	minAway = 10 * time.Second
	maxAway = 45 * time.Second
)

// Mistyped passwords: a login goes wrong now and then, but a user makes at
// most maxMistypes in mistypeWindow, far below the brute-force rule's 10
// failed logins in 5 minutes.
const (
	mistypePercent = 10
	maxMistypes    = 3
	mistypeWindow  = 5 * time.Minute
)

// Share of a signed-in user's actions, in percent; the rest browse.
const (
	abandonPercent    = 4
	logoutPercent     = 7
	regeneratePercent = 3
)

// act does one action of a normal user: log in, browse a page, regenerate
// the session, log out or walk away, and sets when the user acts next.
func (s *Simulator) act(ctx context.Context, r *rand.Rand, u *user) {
	now := time.Now()
	u.next = now.Add(between(r, minThink, maxThink))
	if u.sess == nil {
		s.signIn(ctx, r, u, now)
		return
	}
	switch x := r.IntN(100); {
	case x < abandonPercent:
		// The browser is closed: its session cookie goes with it, and the
		// session times out on the server when idle long enough.
		u.sess, u.stale = nil, ""
		s.abandoned.Add(1)
		u.next = now.Add(between(r, minAway, maxAway))
	case x < abandonPercent+logoutPercent:
		if err := s.c.Logout(ctx, u.sess.token); err != nil {
			s.outcome(ctx, "logout", err)
		} else {
			s.logouts.Add(1)
		}
		// The app clears the cookie either way.
		u.sess, u.stale = nil, ""
		u.next = now.Add(between(r, minAway, maxAway))
	case x < abandonPercent+logoutPercent+regeneratePercent:
		// A privilege change (say, into the account's security
		// settings): the app gives the session a new token.
		is, err := s.c.Regenerate(ctx, client.AccessRequest{Token: u.sess.token, IP: u.IP.String(),
			UserAgent: u.UserAgent, CSRFToken: u.sess.csrf, Path: "/account/security"})
		if err != nil {
			s.lost(ctx, r, u, "regenerate", err)
			return
		}
		s.regenerates.Add(1)
		u.sess = &session{token: is.Token, csrf: is.CSRFToken, id: is.SessionID}
	default:
		if err := s.browse(ctx, u, pickPage(r)); err != nil {
			s.lost(ctx, r, u, "validate", err)
		}
	}
}

// browse validates the user's session for a page, from home.
func (s *Simulator) browse(ctx context.Context, u *user, path string) error {
	sess, err := s.c.Validate(ctx, client.AccessRequest{Token: u.sess.token, IP: u.IP.String(),
		UserAgent: u.UserAgent, CSRFToken: u.sess.csrf, Path: path})
	if err != nil {
		return err
	}
	s.validates.Add(1)
	if sess.CSRFToken != "" {
		u.sess.csrf = sess.CSRFToken
	}
	return nil
}

// lost handles a refused call with the user's session. When the session
// is no longer usable (revoked, expired, re-authentication required), the
// app sends the user to its login page, and the user logs in again; the
// browser still holds the old cookie, which the new session replaces.
func (s *Simulator) lost(ctx context.Context, r *rand.Rand, u *user, op string, err error) {
	code := s.outcome(ctx, op, err)
	if client.IsUnauthenticated(err) || code == "csrf_mismatch" {
		u.stale, u.sess = u.sess.token, nil
		u.next = time.Now().Add(between(r, 2*time.Second, 8*time.Second))
	}
}

// signIn logs a normal user in from home: now and then after one mistyped
// password (a login_failed event, and the second attempt a few seconds
// later), then a login_succeeded event and the session.
func (s *Simulator) signIn(ctx context.Context, r *rand.Rand, u *user, now time.Time) {
	if !u.retype && r.IntN(100) < mistypePercent && u.mayMistype(now) {
		err := s.c.ReportLogin(ctx, client.LoginEvent{Failed: true, UserID: u.ID, IP: u.IP.String(), UserAgent: u.UserAgent})
		if err != nil {
			s.outcome(ctx, "report failed login", err)
			return
		}
		s.failedLogins.Add(1)
		u.failed = append(u.failed, now)
		u.retype = true
		u.next = now.Add(between(r, 2*time.Second, 6*time.Second))
		return
	}
	if err := s.signInHome(ctx, u); err != nil {
		if codeOf(err) == "session_limit_reached" {
			u.next = now.Add(between(r, minAway, maxAway))
		}
		return
	}
	u.retype = false
}

// mayMistype reports whether the user may mistype a password now.
func (u *user) mayMistype(now time.Time) bool {
	i := 0
	for i < len(u.failed) && now.Sub(u.failed[i]) > mistypeWindow {
		i++
	}
	u.failed = u.failed[i:]
	return len(u.failed) < maxMistypes
}

// signInHome logs the user in from home, replacing the session of the
// cookie the browser still holds, if any. Errors are counted.
func (s *Simulator) signInHome(ctx context.Context, u *user) error {
	sess, err := s.login(ctx, u.ID, u.IP.String(), u.UserAgent, u.stale, u.attrs)
	if err != nil {
		return err
	}
	u.sess, u.stale = sess, ""
	return nil
}

// login reports a successful login and creates its session. Errors are
// counted.
func (s *Simulator) login(ctx context.Context, userID, ip, ua, replace string, attrs map[string]string) (*session, error) {
	if err := s.c.ReportLogin(ctx, client.LoginEvent{UserID: userID, IP: ip, UserAgent: ua}); err != nil {
		s.outcome(ctx, "report login", err)
		return nil, err
	}
	is, err := s.c.CreateSession(ctx, client.CreateRequest{UserID: userID, IP: ip, UserAgent: ua, ReplaceToken: replace, Attributes: attrs})
	if err != nil {
		s.outcome(ctx, "create session", err)
		return nil, err
	}
	s.logins.Add(1)
	return &session{token: is.Token, csrf: is.CSRFToken, id: is.SessionID}, nil
}

// codeOf returns the service's error code of err, or "".
func codeOf(err error) string {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
