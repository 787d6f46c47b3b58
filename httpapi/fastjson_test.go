package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/sessions"
)

// The hand-written decoding of validate's body agrees with encoding/json on
// every body: same fields, same error.
func FuzzAccessBody(f *testing.F) {
	tok := "03AAAAAAAAAAAAAAAAAAAAAA." + strings.Repeat("A", 43)
	for _, seed := range []string{
		`{"token":"` + tok + `","ip":"198.51.100.7","user_agent":"loadtest","path":"/page"}`,
		` { "token" : "t" , "ip":"2001:db8::1", "csrf_token":"c","path":"/p" } ` + "\n",
		`{"token":"a","token":"b"}`, `{"Token":"a"}`, `{"token":"a\u0041"}`, `{"token":"é"}`, `{"token":"a\"b"}`,
		`{"token":null}`, `{"token":1}`, `{"token":"a",}`, `{"token":"a"} {}`, `{"token":"a"}x`, `{"role":"admin"}`,
		``, ` `, `{`, `{}`, `{ }`, `null`, `[]`, `"x"`, `{"token":"a"`, `{"token":"a\x01"}`, `{"token":"a` + "\x7f" + `"}`,
		`{"ip":"` + strings.Repeat("1", 5000) + `"}`,
		`{"ip":"1.2.3.4","user_agent":"` + strings.Repeat("u", 70000) + `"}`,
	} {
		f.Add([]byte(seed), "")
	}
	f.Add([]byte(`{"token":"a"}`), "text/plain")
	f.Add([]byte(`{"token":"a"}`), "Application/JSON; charset=utf-8")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		req := func() (*httptest.ResponseRecorder, *http.Request) {
			r := httptest.NewRequest("POST", "/v1/sessions/validate", bytes.NewReader(body))
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			return httptest.NewRecorder(), r
		}
		var want, got accessBody
		w1, r1 := req()
		errWant := decode(w1, r1, &want)
		w2, r2 := req()
		errGot := decodeAccess(w2, r2, &got)
		if (errWant == nil) != (errGot == nil) || (errWant != nil && errWant.Error() != errGot.Error()) {
			t.Fatalf("%q: error %v, encoding/json %v", body, errGot, errWant)
		}
		if errWant == nil && got != want {
			t.Fatalf("%q: decoded %+v, encoding/json %+v", body, got, want)
		}
		if w1.Header().Get("Connection") != w2.Header().Get("Connection") {
			t.Fatalf("%q: Connection header %q, encoding/json %q", body, w2.Header().Get("Connection"), w1.Header().Get("Connection"))
		}
	})
}

// The hand-written answer of validate is byte for byte encoding/json's.
func FuzzSessionAnswer(f *testing.F) {
	f.Add("03AAAAAAAAAAAAAAAAAAAAAA", "alice", "shop", "198.51.100.7", "Mozilla/5.0 (X11)", int64(1795322327123), int64(0), "active", "csrf", "")
	f.Add("s", "<b>&", "a\"b", "::1", "ü\u2028", int64(-62167219200001), int64(3600), "reauth_required", "", "k")
	f.Add("s", "u", "a", "ip", "ua", int64(253402300800000), int64(-5), "active", "c", "")
	f.Add("s", "u\\", "a", "ip", "\x7f", int64(0), int64(86400), "", "c\n", "")
	f.Fuzz(func(t *testing.T, id, uid, app, ip, ua string, ms, off int64, state, csrf, attr string) {
		loc := time.UTC
		if off != 0 {
			loc = time.FixedZone("z", int(off%(48*3600)))
		}
		at := time.UnixMilli(ms).In(loc)
		s := &sessions.Session{ID: id, UserID: uid, App: app, IP: ip, UserAgent: ua, CreatedAt: at, LastSeenAt: at.Add(time.Second),
			ExpiresAt: at.Add(time.Hour), IdleExpiresAt: at.Add(1500 * time.Millisecond), State: sessions.State(state), CSRFToken: csrf}
		if attr != "" {
			s.Attributes = map[string]string{attr: attr}
		}
		want := httptest.NewRecorder()
		writeJSON(want, http.StatusOK, s)
		got := httptest.NewRecorder()
		writeSession(got, http.StatusOK, s)
		if got.Body.String() != want.Body.String() || got.Code != want.Code ||
			got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || len(got.Header()) != len(want.Header()) {
			t.Fatalf("answer %d %v %q\nencoding/json %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	})
}
