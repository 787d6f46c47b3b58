package httpapi

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sessionmon/sessionmon/sessions"
)

// Role of an API key.
type Role string

// Roles: an app acts on its own sessions; an admin on all.
const (
	RoleApp   Role = "app"
	RoleAdmin Role = "admin"
)

// MinSecretLen is the shortest API key secret accepted.
const MinSecretLen = 24

// APIKey is one configured API key.
type APIKey struct {
	Name   string
	Role   Role
	secret [sha256.Size]byte
}

// ParseAPIKeys parses "name:role:secret" entries separated by commas (the
// SESSIONSVC_API_KEYS form). source names the setting in errors.
func ParseAPIKeys(source, s string) ([]APIKey, error) {
	var keys []APIKey
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, err := parseKey(entry)
		if err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", source, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ReadAPIKeys parses a keys file: one "name:role:secret" per line; blank
// lines and lines starting with # are ignored.
func ReadAPIKeys(source string, r io.Reader) ([]APIKey, error) {
	var keys []APIKey
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseKey(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, n, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return keys, nil
}

func parseKey(entry string) (APIKey, error) {
	name, rest, ok1 := strings.Cut(entry, ":")
	role, secret, ok2 := strings.Cut(rest, ":")
	switch {
	case !ok1 || !ok2:
		return APIKey{}, fmt.Errorf("want name:role:secret")
	case name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		// The name is stored with sessions and events as their app and
		// actor, where control characters have no place.
		return APIKey{}, fmt.Errorf("name: must be non-empty without spaces or control characters")
	case Role(role) != RoleApp && Role(role) != RoleAdmin:
		return APIKey{}, fmt.Errorf("key %q: role must be %q or %q, got %q", name, RoleApp, RoleAdmin, role)
	case len(secret) < MinSecretLen:
		return APIKey{}, fmt.Errorf("key %q: secret shorter than %d characters", name, MinSecretLen)
	}
	return APIKey{Name: name, Role: Role(role), secret: sha256.Sum256([]byte(secret))}, nil
}

// Keys authenticates API keys.
type Keys struct{ keys []APIKey }

// NewKeys checks that names are unique and secrets distinct.
func NewKeys(keys []APIKey) (*Keys, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("no API keys configured")
	}
	names := map[string]bool{}
	secrets := map[[sha256.Size]byte]string{}
	for _, k := range keys {
		if names[k.Name] {
			return nil, fmt.Errorf("key %q: name used twice", k.Name)
		}
		if other, dup := secrets[k.secret]; dup {
			return nil, fmt.Errorf("keys %q and %q share a secret", other, k.Name)
		}
		names[k.Name], secrets[k.secret] = true, k.Name
	}
	return &Keys{keys: keys}, nil
}

// Authenticate returns the caller of a request with a valid bearer key.
// Every configured key is compared, each in constant time.
func (ks *Keys) Authenticate(r *http.Request) (sessions.Caller, bool) {
	auth := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return sessions.Caller{}, false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	found := -1
	for i := range ks.keys {
		if subtle.ConstantTimeCompare(h[:], ks.keys[i].secret[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return sessions.Caller{}, false
	}
	k := ks.keys[found]
	return sessions.Caller{Name: k.Name, Admin: k.Role == RoleAdmin}, true
}
