package sessions

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"

	"github.com/sessionmon/sessionmon/events"
)

// A session token is "<session id>.<secret>": the session ID is the public
// handle that routes the lookup (it starts with the user's two-digit
// partition, so the store finds the right shard without a global index), and
// the secret is 256 bits from crypto/rand, base64url without padding. The
// store keeps only SHA-256 of the secret, so a dump of the store yields no
// usable token, and compares it in constant time.
//
// This is the split-token (selector/verifier) pattern. Only the secret is
// a credential; the session ID alone grants nothing.
const (
	secretBytes    = 32
	secretLen      = 43 // base64url of 32 bytes, no padding
	sessionIDBytes = 16
	sessionIDLen   = 2 + 22 // partition + base64url of 16 bytes
	tokenLen       = sessionIDLen + 1 + secretLen
)

var b64 = base64.RawURLEncoding

// Token is a session token. It redacts itself in every printed, logged or
// marshalled form; Reveal returns the value for the one place that needs it
// (the response that hands it to the app).
type Token string

const redacted = "[REDACTED]"

func (Token) String() string                  { return redacted }
func (Token) GoString() string                { return redacted }
func (Token) LogValue() slog.Value            { return slog.StringValue(redacted) }
func (Token) MarshalText() ([]byte, error)    { return []byte(redacted), nil }
func (t Token) Reveal() string                { return string(t) }
func (t Token) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// SecretHash is SHA-256 of a token's secret.
type SecretHash [sha256.Size]byte

// newToken returns a new token for a new session of a user in partition p.
func newToken(partition int) (Token, string, SecretHash) {
	sid := newSessionID(partition)
	t, h := newSecret(sid)
	return t, sid, h
}

// newSecret returns a new token for an existing session ID.
func newSecret(sid string) (Token, SecretHash) {
	var secret [secretBytes]byte
	mustRand(secret[:])
	enc := b64.EncodeToString(secret[:])
	return Token(sid + "." + enc), sha256.Sum256([]byte(enc))
}

func newSessionID(partition int) string {
	var b [sessionIDBytes]byte
	mustRand(b[:])
	return fmt.Sprintf("%02d%s", partition, b64.EncodeToString(b[:]))
}

// newCSRFToken returns a synchronizer token: 256 bits, base64url.
func newCSRFToken() string {
	var b [32]byte
	mustRand(b[:])
	return b64.EncodeToString(b[:])
}

func mustRand(b []byte) {
	// crypto/rand.Read never returns an error on supported platforms and
	// crashes the program irrecoverably if the OS source fails.
	_, _ = rand.Read(b)
}

// ParseToken splits a token into its session ID and the hash of its secret.
// ok is false for anything that is not a well-formed token; such a token
// can only answer session_not_found.
func ParseToken(t Token) (sid string, h SecretHash, ok bool) {
	s := string(t)
	if len(s) != tokenLen || s[sessionIDLen] != '.' {
		return "", h, false
	}
	sid, secret := s[:sessionIDLen], s[sessionIDLen+1:]
	if !ValidSessionID(sid) {
		return "", h, false
	}
	var raw [secretBytes]byte
	var enc [secretLen]byte // hashed from the stack: []byte(secret) would allocate
	copy(enc[:], secret)
	if n, err := b64.Decode(raw[:], enc[:]); err != nil || n != secretBytes {
		return "", h, false
	}
	return sid, sha256.Sum256(enc[:]), true
}

// ValidSessionID reports whether sid is a well-formed session ID.
func ValidSessionID(sid string) bool {
	if len(sid) != sessionIDLen {
		return false
	}
	p, ok := partitionOfSessionID(sid)
	if !ok || p >= events.Partitions {
		return false
	}
	var raw [sessionIDBytes]byte
	n, err := b64.Decode(raw[:], []byte(sid[2:]))
	return err == nil && n == sessionIDBytes
}

// PartitionOfSessionID returns the partition encoded in a session ID.
func PartitionOfSessionID(sid string) (int, bool) {
	if !ValidSessionID(sid) {
		return 0, false
	}
	return partitionOfSessionID(sid)
}

func partitionOfSessionID(sid string) (int, bool) {
	if len(sid) < 2 || sid[0] < '0' || sid[0] > '9' || sid[1] < '0' || sid[1] > '9' {
		return 0, false
	}
	return int(sid[0]-'0')*10 + int(sid[1]-'0'), true
}
