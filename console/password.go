package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password hashes of reviewer accounts are argon2id in the PHC string
// format ($argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>, base64 without
// padding), or bcrypt ($2a$, $2b$, $2y$). HashPassword makes argon2id ones.

// Argon2Params are argon2id's cost settings.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultArgon2 is RFC 9106's second recommended option: 64 MiB, 3 passes,
// 4 lanes.
var DefaultArgon2 = Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 4}

// Limits on the hashes accepted, so that a configuration cannot make each
// login cost gigabytes or minutes.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 20
	minBcryptCost  = 10
)

// Hash is a parsed password hash.
type Hash struct {
	kind   string // "argon2id" or "bcrypt"
	params Argon2Params
	salt   []byte
	key    []byte
	bcrypt []byte
}

// ParseHash parses and checks a password hash.
func ParseHash(s string) (*Hash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("bcrypt hash: %w", err)
		}
		if cost < minBcryptCost {
			return nil, fmt.Errorf("bcrypt cost %d is below %d", cost, minBcryptCost)
		}
		return &Hash{kind: "bcrypt", bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return nil, errors.New("use argon2id, not argon2i or argon2d")
	}
	return nil, errors.New("not an argon2id ($argon2id$...) or bcrypt ($2b$...) hash (make one with: alerter hash-password)")
}

func parseArgon2id(s string) (*Hash, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 {
		return nil, errors.New("argon2id hash: want $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("argon2id hash: version %q: want v=19", parts[2])
	}
	h := &Hash{kind: "argon2id"}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || seen[k] {
			return nil, fmt.Errorf("argon2id hash: parameter %q", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			h.params.Memory = uint32(n)
		case "t":
			h.params.Time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("argon2id hash: p=%d: at most 255", n)
			}
			h.params.Threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id hash: unknown parameter %q", k)
		}
	}
	p := h.params
	switch {
	case !seen["m"] || !seen["t"] || !seen["p"]:
		return nil, errors.New("argon2id hash: want m, t and p")
	case p.Threads < 1:
		return nil, errors.New("argon2id hash: p must be at least 1")
	case p.Time < 1 || p.Time > maxArgonTime:
		return nil, fmt.Errorf("argon2id hash: t=%d: want 1 to %d", p.Time, maxArgonTime)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxArgonMemory:
		return nil, fmt.Errorf("argon2id hash: m=%d: want %d to %d KiB", p.Memory, 8*uint32(p.Threads), maxArgonMemory)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return nil, errors.New("argon2id hash: salt: want 8 to 64 bytes of unpadded base64")
	}
	if h.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return nil, errors.New("argon2id hash: hash: want 16 to 128 bytes of unpadded base64")
	}
	return h, nil
}

// Verify reports whether password matches, comparing in constant time.
func (h *Hash) Verify(password string) bool {
	switch h.kind {
	case "argon2id":
		got := argon2.IDKey([]byte(password), h.salt, h.params.Time, h.params.Memory, h.params.Threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(got, h.key) == 1
	case "bcrypt":
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	return false
}

// HashPassword returns the argon2id hash of password with a random salt.
func HashPassword(password string, p Argon2Params) (string, error) {
	if p.Threads < 1 || p.Time < 1 || p.Memory < 8*uint32(p.Threads) {
		return "", errors.New("argon2id parameters out of range")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}
