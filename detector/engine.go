// Package detector finds session abuse in the event stream: it keeps
// per-user, per-session and per-IP state on the events' own clock, applies
// the rules, and raises explainable alerts. The Engine is deterministic:
// the same rules over the same events raise the same alerts, which is what
// replay, backtests and the rule tests rely on.
package detector

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/rules"
)

// Engine evaluates rules over events. It is not safe for concurrent use:
// one goroutine feeds it, in stream order (per user, that is event order).
type Engine struct {
	set      *rules.Set
	byType   rulesByType
	geo      geo.Resolver
	clock    time.Time // the newest event time seen
	clockSet bool      // an event was seen (the zero time is no lower bound: times before year 1 exist)
	users    map[string]*userState
	sessions map[string]*sessionState
	ips      map[netip.Addr]*ipState
	cooldown map[coolKey]time.Time
	lastGC   time.Time
	// Lower bounds of the seen times of the sessions, users and IPs, and
	// of the cooldowns' ends: gc skips walking a map none of whose entries
	// can have run out, which is most of its runs while every entry is in
	// use.
	oldestSession, oldestUser, oldestIP, firstCoolEnd lowWater
	// count counts the events each kind of rule was given, for the
	// evaluations metric.
	count struct{ travelCountry, shared, burst, failed, succeeded uint64 }
}

// located is the last placed event of a user, kept small: the rest of its
// evidence is rebuilt from the cached location when an alert needs it.
type located struct {
	id       string
	typ      events.Type
	ua       string
	t        time.Time
	session  string
	ip       netip.Addr
	lat, lon float64
	acc      float64
	asn      uint32
}

func (l *located) ref(e *Engine) events.EventRef {
	r := events.EventRef{ID: l.id, Type: l.typ, Time: l.t, SessionID: l.session, IP: l.ip.String(), UserAgent: l.ua}
	return placed(r, e.locate(l.ip))
}

type userState struct {
	gone      bool // dropped from the engine by gc
	seen      time.Time
	travel    *located
	countries []seenCountry
	failed    []ruleCounter
}

type seenCountry struct {
	code string
	last time.Time
}

// ruleCounter is a window count of one rule.
type ruleCounter struct {
	rule string
	c    counter
}

// counterFor finds or adds the counter of rule r in cs.
func counterFor(cs *[]ruleCounter, r *rules.Rule) *counter {
	for i := range *cs {
		if (*cs)[i].rule == r.Name {
			return &(*cs)[i].c
		}
	}
	*cs = append(*cs, ruleCounter{rule: r.Name})
	return &(*cs)[len(*cs)-1].c
}

type ipSeen struct {
	net   netip.Prefix // the address's /24 (IPv4) or /64 (IPv6)
	ip    netip.Addr   // the first address seen in it
	first time.Time
	last  time.Time
}

// network is the network an address is taken to stand for: NAT pools and
// carriers rotate addresses within a /24 (IPv4) or /64 (IPv6), which is not
// a second device.
func network(ip netip.Addr) netip.Prefix {
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

type sessionState struct {
	seen   time.Time
	user   string
	u      *userState // the user's state, while not gone
	ipst   *ipState   // the state of ipOf, while not gone
	ipOf   netip.Addr
	ips    []ipSeen // distinct networks in order of first use, at most 4
	lastIP netip.Addr
	ua     string
	// recent are the last accesses, for evidence: a ring whose oldest
	// entry is at next, which the next access overwrites (shifting the
	// array instead copied 288 bytes per access).
	recent [3]access
	next   uint8
	burst  []ruleCounter
}

// access is an event of a session, as kept for evidence.
type access struct {
	id  string
	t   time.Time
	typ events.Type
	ip  netip.Addr
	ua  string
}

type ipState struct {
	gone   bool // dropped from the engine by gc
	seen   time.Time
	burst  []ruleCounter
	failed map[string]map[string]time.Time // rule -> user -> last failure
}

// New returns an engine over a rule set and a resolver (geo.None{} turns
// the geographic rules off).
func New(set *rules.Set, r geo.Resolver) *Engine {
	if r == nil {
		r = geo.None{}
	}
	e := &Engine{geo: r, users: map[string]*userState{}, sessions: map[string]*sessionState{},
		ips: map[netip.Addr]*ipState{}, cooldown: map[coolKey]time.Time{}}
	e.SetRules(set)
	return e
}

// SetRules swaps the rules, keeping the state (SIGHUP reload). Window
// counts of a rule whose window changed start again.
func (e *Engine) SetRules(set *rules.Set) {
	e.set = set
	e.byType = rulesByType{}
	for _, r := range set.Rules {
		if l := e.byType.of(r.Type); l != nil {
			*l = append(*l, r)
		}
	}
}

// rulesByType holds the rules in force by type. Every event asks for some
// types' rules: fields rather than a map keyed by the type's string, which
// hashed it each time.
type rulesByType struct {
	travel, newCountry, shared, burst, bruteForce, stuffing []*rules.Rule
}

func (b *rulesByType) of(t rules.Type) *[]*rules.Rule {
	switch t {
	case rules.ImpossibleTravel:
		return &b.travel
	case rules.NewCountry:
		return &b.newCountry
	case rules.SharedSession:
		return &b.shared
	case rules.RequestBurst:
		return &b.burst
	case rules.BruteForce:
		return &b.bruteForce
	case rules.CredentialStuffing:
		return &b.stuffing
	}
	return nil
}

// lowWater is a lower bound of some times (the seen times of a map's
// entries, say). A time only kept to grow does not move it; a new one may
// lower it; gc sets it again when it walks the map.
type lowWater struct {
	t   time.Time
	set bool // false: no times, nothing to walk
}

func (w *lowWater) note(t time.Time) {
	if !w.set || t.Before(w.t) {
		w.t, w.set = t, true
	}
}

// coolKey is a rule's cooldown for one key (user, session, IP...).
type coolKey struct {
	rule string
	key  string
}

// Rules returns the rules in force.
func (e *Engine) Rules() *rules.Set { return e.set }

// Clock is the newest event time the engine has seen.
func (e *Engine) Clock() time.Time { return e.clock }

// Evaluations reports, per rule in force, how many events it was given
// since the engine started: the events of the types it looks at.
func (e *Engine) Evaluations() map[string]uint64 {
	out := make(map[string]uint64, len(e.set.Rules))
	for _, r := range e.set.Rules {
		var n uint64
		switch r.Type {
		case rules.ImpossibleTravel:
			n = e.count.travelCountry
		case rules.NewCountry:
			n = e.count.travelCountry + e.count.succeeded
		case rules.SharedSession:
			n = e.count.shared
		case rules.RequestBurst:
			n = e.count.burst
		case rules.BruteForce, rules.CredentialStuffing:
			n = e.count.failed
		}
		out[r.Name] = n
	}
	return out
}

// Size reports how much state the engine holds.
func (e *Engine) Size() (users, sessions, ips int) { return len(e.users), len(e.sessions), len(e.ips) }

// Process evaluates one event and returns the alerts it raises, in rule
// order. Alerts carry the action the rule asks for; carrying it out is the
// caller's business.
//
// Process takes any event time without a panic: windows count times
// before 1970 and past 2262 (see counter.add), and times centuries apart
// are as far apart as a time.Duration holds. But the engine runs on the
// newest event time it has seen, so an event dated in the future moves
// every window forward: the service and Replay refuse absurd times (see
// CheckTime) before they get here.
func (e *Engine) Process(ev events.Event) []events.Alert {
	// The rules take the event by pointer: it is large, and they are many.
	return e.process(&ev)
}

func (e *Engine) process(ev *events.Event) []events.Alert {
	if ev.Time.After(e.clock) || !e.clockSet {
		e.clock, e.clockSet = ev.Time, true
	}
	var out []events.Alert
	ip, _ := netip.ParseAddr(ev.Data.IP)
	ip = ip.Unmap()
	switch ev.Type {
	case events.SessionCreated, events.SessionAccessed:
		e.count.travelCountry++
		if ev.Data.SessionID != "" {
			e.count.shared++
			if ev.Type == events.SessionAccessed {
				e.count.burst++
			}
		}
		loc := e.locate(ip)
		var s *sessionState
		var u *userState
		if ev.Data.SessionID != "" {
			s = e.session(ev.Data.SessionID, ev.Data.UserID, ev.Time)
			u = e.userOf(s, ev)
		} else {
			u = e.user(ev.Data.UserID, ev.Time)
		}
		out = append(out, e.travel(ev, ip, &loc, u)...)
		out = append(out, e.newCountry(ev, ip, &loc, u)...)
		if s != nil {
			out = append(out, e.shared(ev, ip, s)...)
			if ev.Type == events.SessionAccessed {
				out = append(out, e.burst(ev, ip, &loc, s)...)
			}
		}
	case events.AuthLoginFailed:
		e.count.failed++
		out = append(out, e.failedLogin(ev, ip)...)
	case events.AuthLoginSucceeded:
		e.count.succeeded++
		loc := e.locate(ip)
		u := e.user(ev.Data.UserID, ev.Time)
		out = append(out, e.newCountry(ev, ip, &loc, u)...)
	default:
		if ev.Type.Ending() {
			delete(e.sessions, ev.Data.SessionID)
		}
	}
	if e.clock.Sub(e.lastGC) > time.Minute {
		e.gc()
	}
	return out
}

// locate places an address. Resolvers cache their answers (geo.MaxMind
// does): sessions come back from the same addresses.
func (e *Engine) locate(ip netip.Addr) geo.Location {
	if !ip.IsValid() {
		return geo.Location{}
	}
	return e.geo.Lookup(ip)
}

// refOf is the evidence of an event; rules build it only when they fire.
func refOf(ev *events.Event, loc *geo.Location) events.EventRef {
	r := events.EventRef{ID: ev.ID, Type: ev.Type, Time: ev.Time, SessionID: ev.Data.SessionID, IP: ev.Data.IP, UserAgent: ev.Data.UserAgent}
	return placed(r, *loc)
}

// placed adds where an event happened to its reference.
func placed(r events.EventRef, loc geo.Location) events.EventRef {
	if loc.Known {
		r.Country, r.City, r.Lat, r.Lon, r.AccuracyKm, r.ASN = loc.Country, loc.City, loc.Lat, loc.Lon, loc.AccuracyKm, loc.ASN
	}
	return r
}

func (e *Engine) user(id string, t time.Time) *userState {
	u := e.users[id]
	if u == nil {
		u = &userState{seen: latest(time.Time{}, t)}
		e.users[id] = u
		e.oldestUser.note(u.seen)
	} else if t.After(u.seen) {
		u.seen = t
	}
	return u
}

// userOf returns the state of a session's user. Sessions keep a pointer
// to it, which saves a map lookup per access; a user dropped by gc is
// marked gone, and then looked up (or made) again.
func (e *Engine) userOf(s *sessionState, ev *events.Event) *userState {
	if u := s.u; u != nil && !u.gone && s.user == ev.Data.UserID {
		if ev.Time.After(u.seen) {
			u.seen = ev.Time
		}
		return u
	}
	s.u = e.user(ev.Data.UserID, ev.Time)
	return s.u
}

// ipOf returns the state of the address a session is used from, kept in
// the session while the address stays the same.
func (e *Engine) ipOf(s *sessionState, ip netip.Addr, t time.Time) *ipState {
	if st := s.ipst; st != nil && !st.gone && s.ipOf == ip {
		if t.After(st.seen) {
			st.seen = t
		}
		return st
	}
	s.ipst, s.ipOf = e.ipState(ip, t), ip
	return s.ipst
}

func (e *Engine) session(id, user string, t time.Time) *sessionState {
	s := e.sessions[id]
	if s == nil {
		s = &sessionState{user: user, seen: latest(time.Time{}, t)}
		e.sessions[id] = s
		e.oldestSession.note(s.seen)
	} else if t.After(s.seen) {
		s.seen = t
	}
	return s
}

func (e *Engine) ipState(ip netip.Addr, t time.Time) *ipState {
	s := e.ips[ip]
	if s == nil {
		s = &ipState{seen: latest(time.Time{}, t)}
		e.ips[ip] = s
		e.oldestIP.note(s.seen)
	} else if t.After(s.seen) {
		s.seen = t
	}
	return s
}

// cooling reports whether a rule is in its cooldown for key: callers ask
// before building an alert, so a rule that keeps matching costs little.
func (e *Engine) cooling(r *rules.Rule, key string, t time.Time) bool {
	until, ok := e.cooldown[coolKey{r.Name, key}]
	return ok && t.Before(until)
}

// fire starts the cooldown and completes the alert.
func (e *Engine) fire(r *rules.Rule, key string, ev *events.Event, a events.Alert) []events.Alert {
	until := ev.Time.Add(r.Cooldown.D())
	e.cooldown[coolKey{r.Name, key}] = until
	e.firstCoolEnd.note(until)
	a.ID = events.AlertID(r.Name, key, ev.ID)
	a.Time = ev.Time
	a.Rule, a.RuleType, a.RuleVersion, a.Severity, a.Mode = r.Name, string(r.Type), r.Version, string(r.Severity), string(r.Mode)
	if a.Action == "" {
		a.Action = string(r.Action)
	}
	switch {
	case a.Action == string(rules.ActionAlert):
		a.ActionResult = "none"
	case r.Mode == rules.LogOnly:
		a.ActionResult = "log_only"
	default:
		a.ActionResult = "pending"
	}
	if a.Target == "" {
		switch rules.Action(a.Action) {
		case rules.ActionRevokeUser:
			a.Target = a.UserID
		case rules.ActionReauth, rules.ActionRevokeSession:
			if len(a.SessionIDs) > 0 {
				a.Target = a.SessionIDs[len(a.SessionIDs)-1]
			}
		}
	}
	return []events.Alert{a}
}

// allowed reports whether a rule's allow-list covers the event.
func allowed(r *rules.Rule, user string, ip netip.Addr, asn uint32) bool {
	return r.Allow.AllowsUser(user) || (ip.IsValid() && r.Allow.AllowsIP(ip)) || r.Allow.AllowsASN(asn)
}

func (e *Engine) travel(ev *events.Event, ip netip.Addr, loc *geo.Location, u *userState) []events.Alert {
	if !loc.Known || loc.Anonymous {
		return nil // no place to compare, or an anonymizer: not travel
	}
	if u.travel == nil {
		u.travel = &located{id: ev.ID, typ: intern(ev.Type), ua: ev.Data.UserAgent, t: ev.Time, session: ev.Data.SessionID, ip: ip,
			lat: loc.Lat, lon: loc.Lon, acc: loc.AccuracyKm, asn: loc.ASN}
		return nil
	}
	// The last placed event is overwritten in place rather than allocated
	// anew: most events are placed, and an allocation per event was most of
	// the engine's garbage.
	prev := *u.travel
	if !ev.Time.Before(prev.t) {
		*u.travel = located{id: ev.ID, typ: intern(ev.Type), ua: ev.Data.UserAgent, t: ev.Time, session: ev.Data.SessionID, ip: ip,
			lat: loc.Lat, lon: loc.Lon, acc: loc.AccuracyKm, asn: loc.ASN}
	}
	if prev.ip == ip {
		return nil
	}
	var out []events.Alert
	for _, r := range e.byType.travel {
		if allowed(r, ev.Data.UserID, ip, loc.ASN) || allowed(r, "", prev.ip, prev.asn) {
			continue
		}
		d := geo.DistanceKm(prev.lat, prev.lon, loc.Lat, loc.Lon)
		eff := d - prev.acc - loc.AccuracyKm
		if eff <= r.MinDistanceKm {
			continue
		}
		// Events out of order or at the same instant (clock skew between
		// app servers) are compared over at least one second.
		elapsed := max(apart(ev.Time, prev.t), time.Second)
		speed := eff / elapsed.Hours()
		if speed <= r.MaxSpeedKmh || e.cooling(r, ev.Data.UserID, ev.Time) {
			continue
		}
		pref := prev.ref(e)
		same := prev.session != "" && prev.session == ev.Data.SessionID
		ref := refOf(ev, loc)
		first, second := pref, ref
		if ev.Time.Before(prev.t) {
			first, second = ref, pref
		}
		a := events.Alert{
			UserID: ev.Data.UserID, Action: string(r.Action), Target: second.SessionID,
			SessionIDs: dedupe(first.SessionID, second.SessionID),
			Summary: fmt.Sprintf("%s: %s (%s) then %s (%s) %s apart: %.0f km, %.0f km/h", ev.Data.UserID,
				place(first), first.IP, place(second), second.IP, elapsed.Round(time.Second), eff, speed),
			Evidence: events.Evidence{Events: []events.EventRef{first, second}, DistanceKm: round1(d),
				EffectiveDistanceKm: round1(eff), SpeedKmh: round1(speed), ElapsedSeconds: elapsed.Seconds(), SameSession: same},
		}
		if same {
			a.Action = string(r.SameSessionAction)
		}
		out = append(out, e.fire(r, ev.Data.UserID, ev, a)...)
	}
	return out
}

func (e *Engine) newCountry(ev *events.Event, ip netip.Addr, loc *geo.Location, u *userState) []events.Alert {
	if !loc.Known || loc.Country == "" || loc.Anonymous {
		return nil
	}
	idx := slices.IndexFunc(u.countries, func(c seenCountry) bool { return c.code == loc.Country })
	var out []events.Alert
	for _, r := range e.byType.newCountry {
		if len(u.countries) == 0 || allowed(r, ev.Data.UserID, ip, loc.ASN) {
			continue // no history yet: nothing to compare with
		}
		if idx >= 0 && apart(ev.Time, u.countries[idx].last) <= r.History.D() || e.cooling(r, ev.Data.UserID+"\x00"+loc.Country, ev.Time) {
			continue
		}
		var known []string
		for _, c := range u.countries {
			if apart(ev.Time, c.last) <= r.History.D() {
				known = append(known, c.code)
			}
		}
		if len(known) == 0 {
			continue // the history aged out: no baseline
		}
		sort.Strings(known)
		a := events.Alert{
			UserID: ev.Data.UserID, SessionIDs: dedupe(ev.Data.SessionID),
			Summary:  fmt.Sprintf("%s: first event from %s (%s); known: %v", ev.Data.UserID, loc.Country, ev.Data.IP, known),
			Evidence: events.Evidence{Events: []events.EventRef{refOf(ev, loc)}, Country: loc.Country, KnownCountries: known},
		}
		out = append(out, e.fire(r, ev.Data.UserID+"\x00"+loc.Country, ev, a)...)
	}
	switch {
	case idx < 0:
		u.countries = append(u.countries, seenCountry{code: loc.Country, last: ev.Time})
	case ev.Time.After(u.countries[idx].last):
		u.countries[idx].last = ev.Time
	}
	return out
}

func (e *Engine) shared(ev *events.Event, ip netip.Addr, s *sessionState) []events.Alert {
	prevIP, prevUA := s.lastIP, s.ua
	s.recent[s.next] = access{id: ev.ID, t: ev.Time, typ: intern(ev.Type), ip: ip, ua: ev.Data.UserAgent}
	s.next = (s.next + 1) % uint8(len(s.recent))
	if s.ua == "" {
		s.ua = ev.Data.UserAgent
	}
	// A, B, A: the address comes back after another one was used; since
	// is how long ago it was last used.
	interleaved, since := false, time.Duration(0)
	if ip.IsValid() {
		n := network(ip)
		idx := slices.IndexFunc(s.ips, func(x ipSeen) bool { return x.net == n })
		if idx >= 0 && prevIP.IsValid() && network(prevIP) != n {
			interleaved, since = true, apart(ev.Time, s.ips[idx].last)
		}
		if idx >= 0 {
			s.ips[idx].last = ev.Time
		} else {
			if len(s.ips) == 4 {
				s.ips = s.ips[1:]
			}
			s.ips = append(s.ips, ipSeen{net: n, ip: ip, first: ev.Time, last: ev.Time})
		}
		s.lastIP = ip
	}
	var out []events.Alert
	for _, r := range e.byType.shared {
		if allowed(r, ev.Data.UserID, ip, 0) {
			continue
		}
		// The cooldown, a map lookup, is asked after the cheap conditions:
		// most accesses meet neither.
		alternate := interleaved && since <= r.Window.D()
		uaChanged := *r.UserAgentChange && prevUA != "" && ev.Data.UserAgent != "" && ev.Data.UserAgent != prevUA
		if !alternate && !uaChanged || e.cooling(r, ev.Data.SessionID, ev.Time) {
			continue
		}
		why := "user agent changed mid-session"
		if alternate {
			why = fmt.Sprintf("used from %s and %s alternately", prevIP, ip)
		}
		var ips, uas []string
		for _, x := range s.ips {
			ips = append(ips, x.ip.String())
		}
		uas = dedupe(prevUA, ev.Data.UserAgent)
		a := events.Alert{
			UserID: ev.Data.UserID, SessionIDs: []string{ev.Data.SessionID}, Target: ev.Data.SessionID,
			Summary:  fmt.Sprintf("session %s of %s %s", ev.Data.SessionID, ev.Data.UserID, why),
			Evidence: events.Evidence{Events: e.recentRefs(ev.Data.SessionID, s), IPs: ips, UserAgents: uas},
		}
		out = append(out, e.fire(r, ev.Data.SessionID, ev, a)...)
	}
	return out
}

// recentRefs rebuilds the evidence of a session's last accesses.
func (e *Engine) recentRefs(sid string, s *sessionState) []events.EventRef {
	var out []events.EventRef
	for i := range len(s.recent) {
		a := &s.recent[(int(s.next)+i)%len(s.recent)] // oldest first
		if a.id == "" {
			continue
		}
		r := events.EventRef{ID: a.id, Type: a.typ, Time: a.t, SessionID: sid, IP: a.ip.String(), UserAgent: a.ua}
		out = append(out, placed(r, e.locate(a.ip)))
	}
	return out
}

func (e *Engine) burst(ev *events.Event, ip netip.Addr, loc *geo.Location, s *sessionState) []events.Alert {
	var out []events.Alert
	for _, r := range e.byType.burst {
		if allowed(r, ev.Data.UserID, ip, 0) {
			continue
		}
		var c *counter
		var key string
		switch r.Scope {
		case rules.ScopeSession:
			c = counterFor(&s.burst, r)
			key = ev.Data.SessionID
		case rules.ScopeIP:
			if !ip.IsValid() {
				continue
			}
			c = counterFor(&e.ipOf(s, ip, ev.Time).burst, r)
		}
		n := c.add(ev.Time, r.Window.D())
		if n <= r.Threshold {
			continue
		}
		if r.Scope == rules.ScopeIP {
			key = ip.String()
		}
		if e.cooling(r, key, ev.Time) {
			continue
		}
		a := events.Alert{
			UserID: ev.Data.UserID, SessionIDs: []string{ev.Data.SessionID},
			Summary: fmt.Sprintf("%d validations of %s %s within %s (threshold %d)", n, r.Scope, key, r.Window.D(), r.Threshold),
			Evidence: events.Evidence{Events: []events.EventRef{refOf(ev, loc)}, Count: n, Threshold: r.Threshold,
				WindowSeconds: r.Window.D().Seconds(), IPs: []string{ev.Data.IP}},
		}
		if r.Scope == rules.ScopeIP {
			a.IP, a.UserID, a.SessionIDs = key, "", nil
		}
		out = append(out, e.fire(r, key, ev, a)...)
	}
	return out
}

func (e *Engine) failedLogin(ev *events.Event, ip netip.Addr) []events.Alert {
	var out []events.Alert
	loc := e.locate(ip)
	u := e.user(ev.Data.UserID, ev.Time)
	for _, r := range e.byType.bruteForce {
		if allowed(r, ev.Data.UserID, ip, loc.ASN) {
			continue
		}
		n := counterFor(&u.failed, r).add(ev.Time, r.Window.D())
		if n < r.Threshold || e.cooling(r, ev.Data.UserID, ev.Time) {
			continue
		}
		a := events.Alert{
			UserID:  ev.Data.UserID,
			Summary: fmt.Sprintf("%d failed logins for %s within %s (threshold %d)", n, ev.Data.UserID, r.Window.D(), r.Threshold),
			Evidence: events.Evidence{Events: []events.EventRef{refOf(ev, &loc)}, Count: n, Threshold: r.Threshold,
				WindowSeconds: r.Window.D().Seconds(), IPs: []string{ev.Data.IP}},
		}
		out = append(out, e.fire(r, ev.Data.UserID, ev, a)...)
	}
	if !ip.IsValid() {
		return out
	}
	for _, r := range e.byType.stuffing {
		if allowed(r, "", ip, loc.ASN) {
			continue
		}
		st := e.ipState(ip, ev.Time)
		if st.failed == nil {
			st.failed = map[string]map[string]time.Time{}
		}
		users := st.failed[r.Name]
		if users == nil {
			users = map[string]time.Time{}
			st.failed[r.Name] = users
		}
		if last, ok := users[ev.Data.UserID]; !ok || ev.Time.After(last) {
			users[ev.Data.UserID] = ev.Time // (an absent user's zero time is no later time)
		}
		if len(users) < r.DistinctUsers || e.cooling(r, ip.String(), ev.Time) {
			continue
		}
		// Enough users to matter: drop the ones outside the window, which
		// also keeps the map near the threshold.
		var fresh []string
		for u, t := range users {
			if e.clock.Sub(t) > r.Window.D() {
				delete(users, u)
				continue
			}
			fresh = append(fresh, u)
		}
		if len(fresh) < r.DistinctUsers {
			continue
		}
		sort.Strings(fresh)
		a := events.Alert{
			IP:      ip.String(),
			Summary: fmt.Sprintf("failed logins for %d distinct users from %s within %s (threshold %d)", len(fresh), ip, r.Window.D(), r.DistinctUsers),
			Evidence: events.Evidence{Events: []events.EventRef{refOf(ev, &loc)}, Count: len(fresh), Threshold: r.DistinctUsers,
				WindowSeconds: r.Window.D().Seconds(), Users: fresh, IPs: []string{ip.String()}},
		}
		out = append(out, e.fire(r, ip.String(), ev, a)...)
	}
	return out
}

// gc drops state older than every rule could use, and cooldowns that ran
// out, so memory follows activity, not history.
func (e *Engine) gc() {
	e.lastGC = e.clock
	keepSession, keepIP, keepUser := time.Hour, time.Hour, time.Hour
	for _, r := range e.set.Rules {
		w := r.Window.D()
		switch r.Type {
		case rules.NewCountry:
			keepUser = max(keepUser, r.History.D())
		case rules.BruteForce:
			keepUser = max(keepUser, w)
		case rules.SharedSession:
			keepSession = max(keepSession, w)
		case rules.RequestBurst:
			keepSession, keepIP = max(keepSession, w), max(keepIP, w)
		case rules.CredentialStuffing:
			keepIP = max(keepIP, w)
		}
	}
	// Sessions end by event; this catches the ones whose ending event this
	// detector never saw. 9h covers the default absolute timeout.
	keepSession = max(keepSession, 9*time.Hour)
	// Each map is walked only if its oldest entry may have run out (seen
	// times only grow, so the low water mark is a lower bound): walking
	// every session each minute of event time cost more than the rules.
	sweep(e.sessions, &e.oldestSession, e.clock, keepSession, func(s *sessionState) time.Time { return s.seen }, nil)
	sweep(e.ips, &e.oldestIP, e.clock, keepIP, func(s *ipState) time.Time { return s.seen }, func(s *ipState) { s.gone = true })
	sweep(e.users, &e.oldestUser, e.clock, keepUser, func(u *userState) time.Time { return u.seen }, func(u *userState) { u.gone = true })
	// A cooldown runs out at its end, kept as the entry.
	sweep(e.cooldown, &e.firstCoolEnd, e.clock, 0, func(end time.Time) time.Time { return end }, nil)
}

// sweep deletes the entries of m whose time (seen) is more than keep
// before now, marking each with gone (when not nil), once the low water
// mark w says one may be that old; it notes the other entries' times in w
// anew.
func sweep[K comparable, V any](m map[K]V, w *lowWater, now time.Time, keep time.Duration, seen func(V) time.Time, gone func(V)) {
	if !w.set || now.Sub(w.t) <= keep {
		return
	}
	*w = lowWater{}
	for k, v := range m {
		t := seen(v)
		if now.Sub(t) <= keep {
			w.note(t)
			continue
		}
		if gone != nil {
			gone(v)
		}
		delete(m, k)
	}
}

// apart is how far apart two times are, in either order: at most the
// longest time.Duration (292 years). Out-of-order events count as close
// as they are, not as within every window for being earlier.
// (-a.Sub(b) is no distance: a.Sub(b) saturates at the shortest Duration,
// which has no opposite.)
func apart(a, b time.Time) time.Duration {
	if a.Before(b) {
		return b.Sub(a)
	}
	return a.Sub(b)
}

// latest is the later of two times.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// intern returns the package constant for a decoded type, so kept state
// does not hold a copy of the string per event.
func intern(t events.Type) events.Type {
	for _, k := range events.Types {
		if k == t {
			return k
		}
	}
	return t
}

func place(r events.EventRef) string {
	if r.City != "" {
		return r.City + ", " + r.Country
	}
	return r.Country
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func dedupe(xs ...string) []string {
	var out []string
	for _, x := range xs {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
