package console

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
)

// UserPrefix starts the user ID of every console session at the session
// service: reviewer alice's sessions are those of user "reviewer:alice".
const UserPrefix = "reviewer:"

// Account is a reviewer who may sign in.
type Account struct {
	Name string
	Role string // alerter.RoleResponder or alerter.RoleViewer
	hash *Hash
}

// CanAct reports whether the reviewer may decide and act on sessions.
func (a *Account) CanAct() bool { return a.Role == alerter.RoleResponder }

// Accounts are the reviewers of the configuration.
type Accounts struct {
	byName map[string]*Account
	// dummy is verified when the name is unknown, so that the answer
	// takes as long as for a known name.
	dummy *Hash
	// sem bounds concurrent password checks: each argon2id check may take
	// tens of MiB.
	sem chan struct{}
}

// NewAccounts checks the reviewers' hashes. Errors name the file, line and
// reviewer.
func NewAccounts(specs []alerter.ReviewerSpec) (*Accounts, error) {
	if len(specs) == 0 {
		return nil, errors.New("no reviewers: the console needs at least one (reviewers: in the configuration file)")
	}
	as := &Accounts{byName: map[string]*Account{}, sem: make(chan struct{}, 2)}
	var errs []error
	for _, s := range specs {
		h, err := ParseHash(s.PasswordHash)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: reviewer %q: password_hash: %w", s.File, s.Line, s.Name, err))
			continue
		}
		if _, dup := as.byName[s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: reviewer %q: name: used twice", s.File, s.Line, s.Name))
			continue
		}
		as.byName[s.Name] = &Account{Name: s.Name, Role: s.Role, hash: h}
		if as.dummy == nil {
			as.dummy = dummyLike(h)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return as, nil
}

// dummyLike returns a hash of a random password with the costs of h.
func dummyLike(h *Hash) *Hash {
	d := *h
	if h.kind == "argon2id" {
		d.key = make([]byte, len(h.key))
	}
	return &d
}

// Get returns an account by name.
func (as *Accounts) Get(name string) (*Account, bool) {
	a, ok := as.byName[name]
	return a, ok
}

// Authenticate checks a name and password. It takes about as long whether
// or not the name exists, and compares in constant time.
func (as *Accounts) Authenticate(name, password string) (*Account, bool) {
	as.sem <- struct{}{}
	defer func() { <-as.sem }()
	a, ok := as.byName[name]
	h := as.dummy
	if ok {
		h = a.hash
	}
	match := h.Verify(password)
	// Both must hold; evaluated without short-circuit on the secret part.
	if subtle.ConstantTimeEq(boolInt(match), 1)&subtle.ConstantTimeEq(boolInt(ok), 1) == 1 {
		return a, true
	}
	return nil, false
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// throttle counts failed sign-ins per key (name, IP) in a window and
// refuses further attempts past a limit until the window ends.
type throttle struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	m      map[string]*attempts
}

type attempts struct {
	n     int
	until time.Time
}

const maxThrottleKeys = 100000

func newThrottle(limit int, window time.Duration) *throttle {
	return &throttle{limit: limit, window: window, m: map[string]*attempts{}}
}

// blocked reports whether key is over the limit at now.
func (t *throttle) blocked(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.m[key]
	if !ok || now.After(a.until) {
		return false
	}
	return a.n >= t.limit
}

// fail records a failed attempt of key.
func (t *throttle) fail(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxThrottleKeys {
		for k, a := range t.m {
			if now.After(a.until) {
				delete(t.m, k)
			}
		}
		if len(t.m) >= maxThrottleKeys {
			return // under a flood of distinct keys; the per-IP key still counts
		}
	}
	a, ok := t.m[key]
	if !ok || now.After(a.until) {
		a = &attempts{until: now.Add(t.window)}
		t.m[key] = a
	}
	a.n++
}

// reset forgets key after a successful sign-in.
func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// userID is the session service's user of a reviewer name; names that are
// not valid reviewer names (typed at the sign-in form) are reported as
// one "reviewer:?" so that they cannot inject text into events.
func userID(name string) string {
	if name == "" || len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) {
		return UserPrefix + "?"
	}
	return UserPrefix + name
}
