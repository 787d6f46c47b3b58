package audit

import "strings"

// Session tokens are "<session id>.<secret>": a session ID of two partition
// digits and 22 base64url characters, a dot, and a 43-character base64url
// secret (see package sessions). Events carry no tokens by design, but
// some fields are free text from apps and clients (a request path, a user
// agent, a reason), so the audit writer redacts anything shaped like a
// token before it stores it: the audit log never holds a usable token.
const (
	tokenSIDLen    = 24
	tokenSecretLen = 43
	tokenLen       = tokenSIDLen + 1 + tokenSecretLen
	// Redacted replaces the secret of a token found in free text.
	Redacted = "[redacted]"
)

// RedactTokens returns s with the secret of every token-shaped substring
// replaced by Redacted (the session ID, a public handle, is kept). It does
// not allocate when there is nothing to redact.
func RedactTokens(s string) string {
	if len(s) < tokenLen {
		return s
	}
	var b strings.Builder
	start := 0 // s[start:] is not yet copied to b
	from := tokenSIDLen
	for {
		dot := strings.IndexByte(s[from:], '.')
		if dot < 0 {
			break
		}
		dot += from
		if dot+1+tokenSecretLen > len(s) {
			break
		}
		if dot-tokenSIDLen >= start && isSessionID(s[dot-tokenSIDLen:dot]) && isBase64URL(s[dot+1:dot+1+tokenSecretLen]) {
			if b.Len() == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[start : dot+1])
			b.WriteString(Redacted)
			start = dot + 1 + tokenSecretLen
			from = start + tokenSIDLen
		} else {
			from = dot + 1
		}
		if from >= len(s) {
			break
		}
	}
	if start == 0 {
		return s
	}
	b.WriteString(s[start:])
	return b.String()
}

func isSessionID(s string) bool {
	return s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && isBase64URL(s[2:])
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
