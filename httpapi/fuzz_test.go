package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/sessions"
)

// acceptStore is a fake store that accepts every operation: the fuzzer
// exercises decoding and validation, not storage.
type acceptStore struct{}

func (acceptStore) Create(context.Context, sessions.NewSession) ([]string, error) { return nil, nil }
func (acceptStore) Access(_ context.Context, a sessions.Access) (*sessions.Session, error) {
	return &sessions.Session{ID: a.SessionID, UserID: "u", State: sessions.StateActive}, nil
}
func (s acceptStore) Rotate(ctx context.Context, r sessions.Rotation) (*sessions.Session, error) {
	return s.Access(ctx, r.Access)
}
func (acceptStore) End(context.Context, sessions.End) error                { return nil }
func (acceptStore) EndUser(context.Context, sessions.EndUser) (int, error) { return 1, nil }
func (acceptStore) Reauth(context.Context, sessions.Mark) error            { return nil }
func (acceptStore) List(context.Context, string, string, time.Time) ([]sessions.Session, error) {
	return nil, nil
}
func (acceptStore) Append(context.Context, events.Event) error { return nil }
func (acceptStore) Ping(context.Context) error                 { return nil }

var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/sessions"},
	{"POST", "/v1/sessions/validate"},
	{"POST", "/v1/sessions/regenerate"},
	{"POST", "/v1/sessions/logout"},
	{"POST", "/v1/users/alice/sessions/revoke"},
	{"POST", "/v1/sessions/03AAAAAAAAAAAAAAAAAAAAAA/revoke"},
	{"POST", "/v1/sessions/03AAAAAAAAAAAAAAAAAAAAAA/reauth"},
	{"POST", "/v1/auth-events"},
}

// FuzzRequestBodies sends arbitrary bodies to every route that takes one:
// the answer is never a 5xx, always JSON, and errors carry a code and a
// message.
func FuzzRequestBodies(f *testing.F) {
	svc, err := sessions.NewService(acceptStore{}, sessions.DefaultPolicy(), nil)
	if err != nil {
		f.Fatal(err)
	}
	h := httpapi.Handler(httpapi.Config{Service: svc, Keys: keys(f)})
	tok := "03AAAAAAAAAAAAAAAAAAAAAA." + strings.Repeat("A", 43)
	for i := range fuzzRoutes {
		for _, seed := range []string{
			`{"user_id":"alice","ip":"192.0.2.1","user_agent":"x","attributes":{"a":"b"},"replace_token":"` + tok + `"}`,
			`{"token":"` + tok + `","ip":"2001:db8::1","csrf_token":"c","path":"/p"}`,
			`{"reason":"password_change","except_session_id":"03AAAAAAAAAAAAAAAAAAAAAA","rule":"r"}`,
			`{"type":"login_failed","user_id":"u","ip":"::ffff:1.2.3.4","user_agent":"ua"}`,
			``, `{`, `null`, `[]`, `{"token":1}`, `{"ip":"1.2.3.4"}{}`,
		} {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(r.method, r.path, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+adminSecret)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: status %d %s", r.method, r.path, body, w.Code, w.Body)
		}
		if w.Code == http.StatusNoContent {
			return
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body)
		}
		if w.Code >= 400 {
			e, _ := out["error"].(map[string]any)
			if e == nil || e["code"] == "" || e["message"] == "" {
				t.Fatalf("error answer without code and message: %s", w.Body)
			}
		}
	})
}
