package audit

import (
	"strings"
	"testing"
)

const (
	sid    = "07AbCdEfGhIjKlMnOpQrStUv"
	secret = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_x" // 43
	tok    = sid + "." + secret
)

func TestRedactTokens(t *testing.T) {
	if len(secret) != tokenSecretLen || len(tok) != tokenLen {
		t.Fatal("test token has the wrong shape")
	}
	cases := []struct{ in, want string }{
		{"", ""},
		{"/account", "/account"},
		{tok, sid + "." + Redacted},
		{"/reset?t=" + tok + "&x=1", "/reset?t=" + sid + "." + Redacted + "&x=1"},
		{"Mozilla " + tok + " " + tok, "Mozilla " + sid + "." + Redacted + " " + sid + "." + Redacted},
		{tok + tok, sid + "." + Redacted + sid + "." + Redacted},
		// Near misses are kept: a short secret, a bad session ID, a
		// character outside base64url.
		{sid + "." + secret[:42], sid + "." + secret[:42]},
		{"x7" + sid[2:] + "." + secret, "x7" + sid[2:] + "." + secret},
		{sid + "." + secret[:20] + "!" + secret[21:], sid + "." + secret[:20] + "!" + secret[21:]},
		{strings.Repeat(".", 200), strings.Repeat(".", 200)},
		// A longer run is still redacted (the secret's 43 characters).
		{tok + "zz", sid + "." + Redacted + "zz"},
	}
	for _, c := range cases {
		if got := RedactTokens(c.in); got != c.want {
			t.Errorf("RedactTokens(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(RedactTokens(c.in), secret) && !strings.Contains(c.want, secret) {
			t.Errorf("RedactTokens(%q) keeps the secret", c.in)
		}
	}
}

func TestRedactTokensDoesNotAllocate(t *testing.T) {
	s := "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0 with.some.dots.in.it"
	if n := testing.AllocsPerRun(100, func() { _ = RedactTokens(s) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzRedactTokens(f *testing.F) {
	f.Add(tok)
	f.Add("/x?" + tok + "&" + tok)
	f.Add(sid + "." + sid + "." + secret)
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactTokens(s)
		// Nothing token-shaped survives.
		if again := RedactTokens(out); again != out && !strings.Contains(out, Redacted) {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, out, again)
		}
		for i := 0; i+tokenLen <= len(out); i++ {
			w := out[i : i+tokenLen]
			if w[tokenSIDLen] == '.' && isSessionID(w[:tokenSIDLen]) && isBase64URL(w[tokenSIDLen+1:]) {
				t.Fatalf("%q -> %q still holds a token at %d", s, out, i)
			}
		}
	})
}
