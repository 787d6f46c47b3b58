package simulate_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/rules"
	"github.com/sessionmon/sessionmon/sessions"
	"github.com/sessionmon/sessionmon/simulate"
)

const (
	appSecret   = "shop-secret-0123456789abcdef"
	adminSecret = "detector-secret-0123456789ab"
)

// record is what the service saw of one API call. It holds no token: the
// token's session ID (its public part) stands for it.
type record struct {
	at        time.Time
	route     string // URL path
	status    int
	sid       string // the session of the token, or the one created
	replaced  string // the session of replace_token
	userID    string // from the request, or the answer
	ip, ua    string
	path      string
	csrf      bool
	authEvent string // login_failed, login_succeeded
}

// recorder records the API calls of the handler it wraps.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	recs []record
}

type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

func sidOf(token string) string {
	if token == "" {
		return ""
	}
	sid, _, ok := sessions.ParseToken(sessions.Token(token))
	if !ok {
		return "(malformed)"
	}
	return sid
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct {
		Token        string `json:"token"`
		ReplaceToken string `json:"replace_token"`
		UserID       string `json:"user_id"`
		IP           string `json:"ip"`
		UserAgent    string `json:"user_agent"`
		CSRFToken    string `json:"csrf_token"`
		Path         string `json:"path"`
		Type         string `json:"type"`
	}
	_ = json.Unmarshal(body, &in)
	cw := &captureWriter{ResponseWriter: w}
	rc.next.ServeHTTP(cw, r)
	var out struct {
		SessionID string `json:"session_id"`
		UserID    string `json:"user_id"`
	}
	_ = json.Unmarshal(cw.body.Bytes(), &out)
	rec := record{
		at: time.Now(), route: r.URL.Path, status: cw.status, sid: sidOf(in.Token), replaced: sidOf(in.ReplaceToken),
		userID: in.UserID, ip: in.IP, ua: in.UserAgent, path: in.Path, csrf: in.CSRFToken != "", authEvent: in.Type,
	}
	if rec.sid == "" {
		rec.sid = out.SessionID
	}
	if rec.userID == "" {
		rec.userID = out.UserID
	}
	rc.mu.Lock()
	rc.recs = append(rc.recs, rec)
	rc.mu.Unlock()
}

func (rc *recorder) records() []record {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.recs)
}

// detect runs the detector's engine, with the default rules and the test
// GeoIP databases, over the events the store relays, and carries out the
// alerts' actions through the admin API, as the detector and its
// enforcer do.
type detect struct {
	mu      sync.Mutex
	eng     *detector.Engine
	alerts  []events.Alert
	enforce chan events.Alert
}

func (d *detect) Publish(_ context.Context, evs []events.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range evs {
		for _, a := range d.eng.Process(ev) {
			d.alerts = append(d.alerts, a)
			if detector.Enforceable(a) {
				d.enforce <- a
			}
		}
	}
	return nil
}

func (d *detect) Alerts() []events.Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.alerts)
}

// env is a session service (in-memory store) with a detector.
type env struct {
	url    string
	app    *client.Client
	rec    *recorder
	det    *detect
	logs   *testenv.LogBuffer
	logger *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	logs := &testenv.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sessions.NewService(store, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := httpapi.ParseAPIKeys("test keys", "shop:app:"+appSecret+",detector:admin:"+adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := httpapi.NewKeys(parsed)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: httpapi.Handler(httpapi.Config{Service: svc, Keys: keys, Log: logger})}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	app, err := client.New(srv.URL, appSecret)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(srv.URL, adminSecret)
	if err != nil {
		t.Fatal(err)
	}

	paths := geotest.MustBuild(t)
	g, err := geo.Open(geo.Config{CityDB: paths.City, ASNDB: paths.ASN, AnonymousDB: paths.Anonymous, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	det := &detect{eng: detector.New(rules.Default(), g), enforce: make(chan events.Alert, 10_000)}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	relay := memstore.NewRelay(store, det, logger, nil, memstore.RelayConfig{})
	wg.Go(func() { _ = relay.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case a := <-det.enforce:
				var err error
				switch rules.Action(a.Action) {
				case rules.ActionRevokeSession:
					err = admin.RevokeSession(ctx, a.Target, a.RuleType, a.Rule)
				case rules.ActionReauth:
					err = admin.ForceReauth(ctx, a.Target, a.RuleType, a.Rule)
				}
				if err != nil && ctx.Err() == nil {
					logger.Warn("enforcement failed", "alert", a.ID, "err", err)
				}
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &env{url: srv.URL, app: app, rec: rec, det: det, logs: logs, logger: logger}
}

// run runs sim until done says so or the deadline passes (failing the
// test with the log), and then until Run returns.
func run(t *testing.T, e *env, sim *simulate.Simulator, deadline time.Duration, done func(simulate.Stats) bool) simulate.Stats {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- sim.Run(ctx) }()
	end := time.Now().Add(deadline)
	var st simulate.Stats
	for {
		st = sim.Stats()
		if done(st) {
			break
		}
		if time.Now().After(end) {
			cancel()
			<-ran
			t.Fatalf("not done after %s: stats %+v\nlog:\n%s", deadline, sim.Stats(), e.logs.String())
		}
		select {
		case err := <-ran:
			t.Fatalf("Run returned early: %v\nlog:\n%s", err, e.logs.String())
		case <-time.After(250 * time.Millisecond):
		}
	}
	cancel()
	// SIMULATE_LOG=1 shows the simulator's log (go test -v).
	if os.Getenv("SIMULATE_LOG") != "" {
		defer func() { t.Logf("log:\n%s", e.logs.String()) }()
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
	return sim.Stats()
}

// tokenLike matches a session token: a session ID, a dot, a secret.
var tokenLike = regexp.MustCompile(`[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{32,}`)

func TestSimulate(t *testing.T) {
	e := newEnv(t)
	sim, err := simulate.New(simulate.Config{Client: e.app, Users: 40, Rate: 30, AttackEvery: 2 * time.Second, Seed: 7, Log: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	rulesFired := func() map[string]map[string]bool { // rule -> actions
		m := map[string]map[string]bool{}
		for _, a := range e.det.Alerts() {
			if m[a.Rule] == nil {
				m[a.Rule] = map[string]bool{}
			}
			m[a.Rule][a.Action] = true
		}
		return m
	}
	wantRules := map[string][]string{
		"impossible-travel":   {"reauth", "revoke_session"},
		"shared-session":      {"revoke_session"},
		"session-burst":       {"alert"},
		"ip-burst":            {"alert"},
		"brute-force":         {"alert"},
		"credential-stuffing": {"alert"},
	}
	st := run(t, e, sim, 3*time.Minute, func(st simulate.Stats) bool {
		for _, a := range []string{simulate.AttackStolenCookie, simulate.AttackTravel, simulate.AttackBurst,
			simulate.AttackBruteForce, simulate.AttackStuffing} {
			if st.Attacks[a] < 1 {
				return false
			}
		}
		fired := rulesFired()
		for rule, actions := range wantRules {
			for _, a := range actions {
				if !fired[rule][a] {
					return false
				}
			}
		}
		// The victims and attackers saw the detector's actions.
		return st.Logins > 0 && st.Validates > 0 && st.Logouts > 0 &&
			st.Refused["session_revoked"] > 0 && st.Refused["reauth_required"] > 0
	})
	t.Logf("stats: %+v", st)
	if st.FailedLogins == 0 || st.Regenerates+st.Abandoned == 0 {
		t.Errorf("stats %+v: want failed logins, and regenerations or abandoned sessions", st)
	}
	if st.Errors != 0 {
		t.Errorf("%d errors\nlog:\n%s", st.Errors, e.logs.String())
	}
	recs := e.rec.records()
	users := sim.Users()
	homeOf := map[netip.Addr]simulate.User{}
	byID := map[string]simulate.User{}
	for _, u := range users {
		if prev, dup := homeOf[u.IP]; dup {
			t.Errorf("users %s and %s share the address %s", prev.ID, u.ID, u.IP)
		}
		homeOf[u.IP] = u
		byID[u.ID] = u
	}
	// The user of each session, from its creation.
	userOf := map[string]string{}
	for _, r := range recs {
		if r.route == "/v1/sessions" && r.status == http.StatusCreated {
			userOf[r.sid] = r.userID
		}
	}
	userOfRec := func(r record) string {
		if r.route == "/v1/sessions" || r.route == "/v1/auth-events" {
			return r.userID
		}
		return userOf[r.sid]
	}

	t.Run("homes", func(t *testing.T) {
		// No request from a user's address is for anybody else.
		bad := 0
		for _, r := range recs {
			ip, err := netip.ParseAddr(r.ip)
			if err != nil {
				continue // logout carries no address
			}
			if u, ok := homeOf[ip]; ok && userOfRec(r) != u.ID && bad < 10 {
				bad++
				t.Errorf("%s %s from %s (home of %s) is for user %q", r.at.Format(time.TimeOnly), r.route, ip, u.ID, userOfRec(r))
			}
		}
		// Normal users stay at home with one browser.
		for _, r := range recs {
			u, ok := byID[userOfRec(r)]
			if !ok || r.ip == "" || r.ip == u.IP.String() {
				continue
			}
			ip := netip.MustParseAddr(r.ip)
			if _, theirs := homeOf[ip]; theirs {
				t.Errorf("user %s seen at %s, another user's address", u.ID, ip)
			}
		}
	})

	t.Run("burst", func(t *testing.T) {
		bySession := map[string][]time.Time{}
		for _, r := range recs {
			if r.route == "/v1/sessions/validate" && r.status == http.StatusOK {
				bySession[r.sid] = append(bySession[r.sid], r.at)
			}
		}
		most := 0
		for _, ts := range bySession {
			most = max(most, mostWithin(ts, 10*time.Second))
		}
		if most <= 100 {
			t.Errorf("at most %d validations of one session within 10s, want more than 100", most)
		}
		// No normal user comes close: at most one action a second.
		for sid, ts := range bySession {
			if _, normal := byID[userOf[sid]]; normal && mostWithin(ts, 10*time.Second) > 20 {
				t.Errorf("session %s of %s validated %d times within 10s", sid, userOf[sid], mostWithin(ts, 10*time.Second))
			}
		}
	})

	failed := map[string][]record{} // by IP
	for _, r := range recs {
		if r.route == "/v1/auth-events" && r.authEvent == "login_failed" && r.status == http.StatusAccepted {
			failed[r.ip] = append(failed[r.ip], r)
		}
	}
	t.Run("credential stuffing", func(t *testing.T) {
		most := 0
		for _, rs := range failed {
			most = max(most, distinctUsersWithin(rs, time.Minute))
		}
		if most < 20 {
			t.Errorf("failed logins for at most %d distinct users from one address within a minute, want 20 or more", most)
		}
	})

	t.Run("brute force", func(t *testing.T) {
		most := 0
		for _, rs := range failed {
			byUser := map[string][]time.Time{}
			for _, r := range rs {
				byUser[r.userID] = append(byUser[r.userID], r.at)
			}
			for _, ts := range byUser {
				most = max(most, mostWithin(ts, time.Minute))
			}
		}
		if most < 12 {
			t.Errorf("at most %d failed logins of one user from one address within a minute, want 12 or more", most)
		}
		// Normal users' own mistakes stay far below the rule's 10 in 5 min.
		for id, u := range byID {
			var own []time.Time
			for _, r := range failed[u.IP.String()] {
				if r.userID == id {
					own = append(own, r.at)
				}
			}
			if n := mostWithin(own, 5*time.Minute); n > 3 {
				t.Errorf("user %s mistyped %d passwords within 5 minutes", id, n)
			}
		}
	})

	t.Run("stolen cookie", func(t *testing.T) {
		// A session used from its user's home, then from another network
		// with another browser, then from home again.
		bySession := map[string][]record{}
		for _, r := range recs {
			if r.route == "/v1/sessions/validate" {
				bySession[r.sid] = append(bySession[r.sid], r)
			}
		}
		found := 0
		for sid, rs := range bySession {
			u, ok := byID[userOf[sid]]
			if !ok {
				continue
			}
			state := 0 // 1: seen at home; 2: then elsewhere
			for _, r := range rs {
				home := r.ip == u.IP.String() && r.ua == u.UserAgent
				switch {
				case home && state == 0:
					state = 1
				case !home && state == 1:
					ip := netip.MustParseAddr(r.ip)
					if r.ua == u.UserAgent || sameNet(ip, u.IP) {
						t.Errorf("session %s of %s replayed from %s (%q): same browser or network as the victim's %s (%q)",
							sid, u.ID, ip, r.ua, u.IP, u.UserAgent)
					}
					if place(ip).Country == u.Place.Country {
						t.Errorf("session %s of %s replayed from %s, in the victim's country", sid, u.ID, place(ip))
					}
					state = 2
				case home && state == 2:
					state = 3
				}
			}
			if state == 3 {
				found++
			}
		}
		if found == 0 {
			t.Error("no session was used from home, elsewhere, and home again")
		}
	})

	t.Run("impossible travel", func(t *testing.T) {
		found := 0
		for _, r := range recs {
			if r.route != "/v1/sessions" || r.status != http.StatusCreated {
				continue
			}
			u, ok := byID[r.userID]
			ip := netip.MustParseAddr(r.ip)
			if !ok || ip == u.IP {
				continue
			}
			p := place(ip)
			if p.Anonymous || p.Country == u.Place.Country {
				t.Errorf("second session of %s from %s", u.ID, p)
				continue
			}
			// The user was at home within the minute before.
			for _, h := range recs {
				if h.ip == u.IP.String() && userOfRec(h) == u.ID && h.at.Before(r.at) && r.at.Sub(h.at) < time.Minute {
					found++
					break
				}
			}
		}
		if found == 0 {
			t.Error("no user logged in from abroad within a minute of being at home")
		}
	})

	t.Run("alerts", func(t *testing.T) {
		// Every alert involves an attacker's address: normal traffic
		// raises none.
		for _, a := range e.det.Alerts() {
			ips := slices.Clone(a.Evidence.IPs)
			if a.IP != "" {
				ips = append(ips, a.IP)
			}
			for _, ev := range a.Evidence.Events {
				ips = append(ips, ev.IP)
			}
			attacker := false
			for _, s := range ips {
				ip, err := netip.ParseAddr(s)
				if _, home := homeOf[ip]; err == nil && !home {
					attacker = true
				}
			}
			if !attacker {
				t.Errorf("alert from normal traffic: %s %s: %s", a.Rule, a.Action, a.Summary)
			}
		}
	})

	t.Run("log", func(t *testing.T) {
		log := e.logs.String()
		if m := tokenLike.FindString(log); m != "" {
			t.Errorf("the log holds a token-like string %.12s...", m)
		}
		for _, want := range []string{"attack=" + simulate.AttackStolenCookie, "attack=" + simulate.AttackTravel,
			"attack=" + simulate.AttackBurst, "attack=" + simulate.AttackBruteForce, "attack=" + simulate.AttackStuffing,
			"victim_logged_in_again=true", "refused=reauth_required"} {
			if !strings.Contains(log, want) {
				t.Errorf("the log lacks %q", want)
			}
		}
	})
}

// TestNormalTraffic runs users without attacks: the detector's default
// rules raise nothing.
func TestNormalTraffic(t *testing.T) {
	e := newEnv(t)
	sim, err := simulate.New(simulate.Config{Client: e.app, Users: 40, Rate: 50, Attacks: []string{}, Seed: 11, Log: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	st := run(t, e, sim, 2*time.Minute, func(st simulate.Stats) bool {
		return st.Validates >= 100 && st.Logouts >= 3 && st.FailedLogins >= 1
	})
	if len(st.Attacks) != 0 {
		t.Errorf("attack rounds %v, want none", st.Attacks)
	}
	if st.Errors != 0 || len(st.Refused) != 0 {
		t.Errorf("refused %v, %d errors, want none\nlog:\n%s", st.Refused, st.Errors, e.logs.String())
	}
	// Let the relay hand the last events to the detector.
	time.Sleep(500 * time.Millisecond)
	for _, a := range e.det.Alerts() {
		t.Errorf("alert from normal traffic: %s %s: %s", a.Rule, a.Action, a.Summary)
	}
	// Every request carried the session's CSRF token, and a path.
	for _, r := range e.rec.records() {
		if r.route == "/v1/sessions/validate" && (!r.csrf || r.path == "") {
			t.Errorf("validate without CSRF token or path: %+v", r)
			break
		}
	}
}

// TestBadKey: a key the service refuses stops Run with an error.
func TestBadKey(t *testing.T) {
	e := newEnv(t)
	c, err := client.New(e.url, "wrong-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simulate.New(simulate.Config{Client: c, Users: 5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = sim.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "API key") {
		t.Fatalf("Run with a wrong key: %v, want an error about the API key", err)
	}
}

func TestNew(t *testing.T) {
	c, err := client.New("http://127.0.0.1:1", appSecret)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cfg   simulate.Config
		field string
	}{
		{simulate.Config{}, "Client"},
		{simulate.Config{Client: c, Users: -1}, "Users"},
		{simulate.Config{Client: c, Users: simulate.MaxUsers + 1}, "Users"},
		{simulate.Config{Client: c, Rate: -1}, "Rate"},
		{simulate.Config{Client: c, Rate: math.NaN()}, "Rate"},
		{simulate.Config{Client: c, Rate: math.Inf(1)}, "Rate"},
		{simulate.Config{Client: c, Rate: simulate.MaxRate * 2}, "Rate"},
		{simulate.Config{Client: c, AttackEvery: -time.Second}, "AttackEvery"},
		{simulate.Config{Client: c, AttackEvery: time.Millisecond}, "AttackEvery"},
		{simulate.Config{Client: c, Attacks: []string{simulate.AttackBurst, "ddos"}}, "Attacks"},
	}
	for _, tc := range cases {
		_, err := simulate.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), "Config."+tc.field+":") {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	for _, cfg := range []simulate.Config{
		{Client: c},
		{Client: c, Users: 1, Rate: 0.5, AttackEvery: time.Hour, Attacks: []string{simulate.AttackTravel, simulate.AttackTravel}},
		{Client: c, Attacks: []string{}},
	} {
		if _, err := simulate.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestUsers(t *testing.T) {
	c, err := client.New("http://127.0.0.1:1", appSecret)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(seed int64, n int) []simulate.User {
		s, err := simulate.New(simulate.Config{Client: c, Users: n, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return s.Users()
	}
	a, b := mk(5, 0), mk(5, 0)
	if len(a) != simulate.DefaultUsers || !slices.Equal(a, b) {
		t.Errorf("seed 5 gave %d users, then different ones", len(a))
	}
	// Enough users to fill the IPv4 homes and spill into IPv6.
	for _, users := range [][]simulate.User{a, mk(9, 3000), mk(1, simulate.MaxUsers)} {
		ips, ids, agents := map[netip.Addr]bool{}, map[string]bool{}, map[string]bool{}
		v6 := 0
		for _, u := range users {
			if ips[u.IP] || ids[u.ID] {
				t.Fatalf("user %s at %s: ID or address used twice", u.ID, u.IP)
			}
			ips[u.IP], ids[u.ID], agents[u.UserAgent] = true, true, true
			if !u.Place.Home || u.Place.Anonymous || !u.Place.Network.Contains(u.IP) {
				t.Errorf("user %s at %s: home %+v", u.ID, u.IP, u.Place)
			}
			if u.IP.Is6() {
				v6++
			}
			if !strings.HasPrefix(u.ID, "u-") && !strings.Contains(u.ID, "@") {
				t.Errorf("user ID %q", u.ID)
			}
			if !strings.HasPrefix(u.UserAgent, "Mozilla/5.0 (") {
				t.Errorf("user agent %q", u.UserAgent)
			}
		}
		if len(agents) < 8 || v6 == 0 {
			t.Errorf("%d users: %d user agents, %d on IPv6", len(users), len(agents), v6)
		}
	}
}

// TestPlaces checks the places against the GeoIP test data.
func TestPlaces(t *testing.T) {
	f, err := os.Open(geotest.CSVPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	rows, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		net                  netip.Prefix
		country, city, anony string
	}
	var csvRows []row
	for _, r := range rows[1:] {
		csvRows = append(csvRows, row{netip.MustParsePrefix(r[0]), r[1], r[2], r[8]})
	}
	homes := 0
	for _, p := range simulate.Places() {
		if p.Home {
			homes++
		}
		i := slices.IndexFunc(csvRows, func(r row) bool { return r.net == p.Network })
		if i < 0 {
			t.Errorf("place %s: network %s is not in %s", p, p.Network, geotest.CSVPath())
			continue
		}
		r := csvRows[i]
		if r.country != p.Country || (r.city != "" && r.city != p.Name) || (r.anony != "") != p.Anonymous {
			t.Errorf("place %+v, CSV row %+v", p, r)
		}
		if p.Home && p.Anonymous {
			t.Errorf("place %s: anonymous home", p)
		}
	}
	if homes < 8 {
		t.Errorf("%d home places", homes)
	}
}

// mostWithin returns the most times within any window d.
func mostWithin(ts []time.Time, d time.Duration) int {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, time.Time.Compare)
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) > d {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// distinctUsersWithin returns the most distinct users of rs within any
// window d.
func distinctUsersWithin(rs []record, d time.Duration) int {
	rs = slices.Clone(rs)
	sort.Slice(rs, func(i, j int) bool { return rs[i].at.Before(rs[j].at) })
	count := map[string]int{}
	most, j := 0, 0
	for i := range rs {
		count[rs[i].userID]++
		for rs[i].at.Sub(rs[j].at) > d {
			if count[rs[j].userID]--; count[rs[j].userID] == 0 {
				delete(count, rs[j].userID)
			}
			j++
		}
		most = max(most, len(count))
	}
	return most
}

func sameNet(a, b netip.Addr) bool {
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.Contains(b)
}

func place(ip netip.Addr) simulate.Place {
	for _, p := range simulate.Places() {
		if p.Network.Contains(ip) {
			return p
		}
	}
	return simulate.Place{Name: "unknown"}
}
