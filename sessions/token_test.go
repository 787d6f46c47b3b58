package sessions

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sessionmon/sessionmon/events"
)

func TestTokenFormat(t *testing.T) {
	seen := map[Token]bool{}
	for p := range events.Partitions {
		tok, sid, h := newToken(p)
		if len(tok) != tokenLen || seen[tok] {
			t.Fatalf("token length %d or repeated", len(tok))
		}
		seen[tok] = true
		gotSID, gotH, ok := ParseToken(tok)
		if !ok || gotSID != sid || gotH != h {
			t.Fatalf("ParseToken(%d) = %q %v", p, gotSID, ok)
		}
		if q, ok := PartitionOfSessionID(sid); !ok || q != p {
			t.Fatalf("partition of %s = %d, want %d", sid, q, p)
		}
	}
}

func TestParseTokenRejects(t *testing.T) {
	tok, _, _ := newToken(3)
	s := tok.Reveal()
	for _, bad := range []string{"", "abc", s[:len(s)-1], s + "A", strings.Replace(s, ".", "_", 1),
		"99" + s[2:], "x3" + s[2:], s[:30] + "!" + s[31:], s[:sessionIDLen+1] + strings.Repeat("=", secretLen)} {
		if _, _, ok := ParseToken(Token(bad)); ok {
			t.Errorf("ParseToken accepted %q", bad)
		}
	}
}

// A token never shows in printed, logged or marshalled output.
func TestTokenRedacts(t *testing.T) {
	tok, _, _ := newToken(1)
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("x", "token", tok)
	b, _ := json.Marshal(struct{ T Token }{tok})
	for _, out := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %s %q %#v %x", tok, tok, tok, tok, tok), sb.String(), string(b)} {
		if strings.Contains(out, tok.Reveal()[sessionIDLen+1:]) || !strings.Contains(out, "REDACTED") {
			t.Errorf("token leaked or not redacted: %s", out)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Policy)
		want string
	}{
		{func(p *Policy) { p.IdleTimeout = 0 }, "idle timeout"},
		{func(p *Policy) { p.AbsoluteTimeout = -1 }, "absolute timeout"},
		{func(p *Policy) { p.IdleTimeout = p.AbsoluteTimeout + 1 }, "shorter than the idle timeout"},
		{func(p *Policy) { p.MaxSessions = -2 }, "max sessions"},
		{func(p *Policy) { p.LimitMode = "kick" }, "limit mode"},
		{func(p *Policy) { p.CookieName = "" }, "cookie name"},
	} {
		p := DefaultPolicy()
		c.edit(&p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckIPCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1", "::ffff:192.0.2.1": "192.0.2.1", "2001:DB8::1": "2001:db8::1",
		"2001:db8:0:0:0:0:0:1": "2001:db8::1", "::1": "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	} {
		got, err := CheckIP("ip", in)
		if err != nil || got != want {
			t.Errorf("CheckIP(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.2.3.400", "fe80::1%eth0", "x"} {
		if _, err := CheckIP("ip", bad); err == nil {
			t.Errorf("CheckIP(%q) accepted", bad)
		}
	}
}
