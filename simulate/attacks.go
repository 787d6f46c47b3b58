package simulate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmon/sessionmon/client"
)

// errNoVictim: every user is busy (a tiny population).
var errNoVictim = errors.New("no user free to attack")

// attackRounds starts a round of each attack every attackEvery, the first
// within 3 seconds, each in its own goroutine, and skips an attack whose
// previous round still runs. It returns when ctx ends and the rounds
// under way have returned.
func (s *Simulator) attackRounds(ctx context.Context) {
	if len(s.attacks) == 0 {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	running := make([]atomic.Bool, len(s.attacks))
	timer := time.NewTimer(min(3*time.Second, s.attackEvery))
	defer timer.Stop()
	for round := uint64(1); ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		for i, name := range s.attacks {
			if !running[i].CompareAndSwap(false, true) {
				s.log.Debug("attack round skipped: the previous one still runs", "attack", name)
				continue
			}
			r := s.rand(1<<32 + round<<8 + uint64(i))
			wg.Go(func() {
				defer running[i].Store(false)
				// A moment apart, so that the rounds read well in the log.
				if sleep(ctx, time.Duration(i)*300*time.Millisecond) {
					s.attack(ctx, r, name)
				}
			})
		}
		timer.Reset(s.attackEvery)
	}
}

// attack runs one round of an attack and counts it when done.
func (s *Simulator) attack(ctx context.Context, r *rand.Rand, name string) {
	var err error
	switch name {
	case AttackStolenCookie:
		err = s.stolenCookie(ctx, r)
	case AttackTravel:
		err = s.travel(ctx, r)
	case AttackBurst:
		err = s.burst(ctx, r)
	case AttackBruteForce:
		err = s.bruteForce(ctx, r)
	case AttackStuffing:
		err = s.stuffing(ctx, r)
	}
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.warn("attack "+name, "attack round failed", "attack", name, "err", err)
	default:
		s.mu.Lock()
		s.rounds[name]++
		s.mu.Unlock()
	}
}

// attackAddr returns the next attacker address of a place. Addresses go
// round each place's attacker addresses from a random start, so that a
// rule's cooldown for an address (10 minutes by default) has passed when
// an address comes back, as far as the network allows.
func (s *Simulator) attackAddr(p *place, r *rand.Rand) netip.Addr {
	s.mu.Lock()
	if s.addrs == nil {
		s.addrs = map[*place]uint64{}
	}
	n, ok := s.addrs[p]
	if !ok {
		n = s.rand(2).Uint64() >> 1
	}
	s.addrs[p] = n + 1
	s.mu.Unlock()
	return p.attackAddr(n, r)
}

// farFrom picks a home place of another country at least minKm from home
// (less both accuracy radii, as the detector measures), outside the /24
// (or /64) of the address avoid.
func farFrom(r *rand.Rand, home *place, minKm float64, avoid netip.Addr) *place {
	var pick *place
	n := 0
	for _, p := range places {
		if !p.Home || p.Anonymous || p.Country == home.Country || distanceKm(home, p) < minKm ||
			p.Network.Overlaps(net24(avoid)) {
			continue
		}
		if n++; r.IntN(n) == 0 {
			pick = p
		}
	}
	return pick
}

// takeVictim takes a user from the pool for an attack that acts as them,
// and signs them in at home if they are not. put gives them back.
func (s *Simulator) takeVictim(ctx context.Context, r *rand.Rand) (u *user, put func(), err error) {
	u = s.pool.victim(r, time.Now(), true, nil)
	if u == nil {
		return nil, nil, errNoVictim
	}
	put = func() {
		u.next = time.Now().Add(between(r, minThink, maxThink))
		s.pool.put(u)
	}
	if u.sess == nil {
		if err := s.signInHome(ctx, u); err != nil {
			put()
			return nil, nil, fmt.Errorf("victim %s: log in: %w", u.ID, err)
		}
	}
	return u, put, nil
}

// victimPage has an attack's victim open a page at home. When the service
// refuses the session, the victim's browser is left holding a dead cookie.
func (s *Simulator) victimPage(ctx context.Context, r *rand.Rand, u *user) error {
	err := s.browse(ctx, u, pickPage(r))
	if err != nil {
		code := s.outcome(ctx, "validate", err)
		if client.IsUnauthenticated(err) || code == "csrf_mismatch" {
			u.stale, u.sess = u.sess.token, nil
		}
	}
	return err
}

// victimBrowses has the victim open pages 0.5 to 1.5 seconds apart, and
// returns the error of the first refused one.
func (s *Simulator) victimBrowses(ctx context.Context, r *rand.Rand, u *user, pages int) error {
	for range pages {
		if err := s.victimPage(ctx, r, u); err != nil {
			return err
		}
		if !sleep(ctx, between(r, 500*time.Millisecond, 1500*time.Millisecond)) {
			return ctx.Err()
		}
	}
	return nil
}

// stolenCookie: a victim browses at home; an attacker who stole the
// session cookie replays its token from another country, far away, with
// another browser, interleaved with the victim's own requests (victim,
// attacker, victim, attacker). The detector's shared-session rule (user
// agent change, then addresses alternating) and its impossible-travel
// rule (within one session) revoke the session; the victim's next request
// is then refused, and the victim logs in again.
func (s *Simulator) stolenCookie(ctx context.Context, r *rand.Rand) error {
	u, put, err := s.takeVictim(ctx, r)
	if err != nil {
		return err
	}
	defer put()
	if err := s.victimBrowses(ctx, r, u, 2); err != nil {
		return fmt.Errorf("victim %s before the theft: %w", u.ID, err)
	}
	src := farFrom(r, u.home, 3000, u.IP)
	if src == nil {
		return fmt.Errorf("no place far enough from %s", u.home)
	}
	ip, b := s.attackAddr(src, r), otherBrowser(r, u.browser)
	stolen := u.sess.token
	sid := u.sess.id
	replay := func(path string) error {
		// The attacker has the cookie, not the page's CSRF token.
		_, err := s.c.Validate(ctx, client.AccessRequest{Token: stolen, IP: ip.String(), UserAgent: b.ua, Path: path})
		if err != nil {
			s.outcome(ctx, "validate (stolen cookie)", err)
			return err
		}
		s.validates.Add(1)
		return nil
	}

	replayed := 0
	var attackerCode, victimCode string
	// replayStep replays the token; a refusal ends the attacker's part.
	replayStep := func(path string) error {
		if attackerCode != "" {
			return nil
		}
		err := replay(path)
		if err == nil {
			replayed++
		} else if attackerCode = codeOf(err); attackerCode != "" {
			err = nil
		}
		return err
	}
	// After the victim's requests above: attacker, victim, attacker.
	if err := replayStep("/account"); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if !sleep(ctx, between(r, 300*time.Millisecond, time.Second)) {
		return ctx.Err()
	}
	if err := s.victimBrowses(ctx, r, u, 1); err != nil {
		if victimCode = codeOf(err); victimCode == "" {
			return fmt.Errorf("victim %s after the theft: %w", u.ID, err)
		}
	}
	if err := replayStep("/account/payment-methods"); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	// The victim goes on browsing until the service refuses the session.
	for i := 0; victimCode == "" && i < 8; i++ {
		if err := s.victimBrowses(ctx, r, u, 1); err != nil {
			victimCode = codeOf(err)
			if victimCode == "" {
				return fmt.Errorf("victim %s after the theft: %w", u.ID, err)
			}
		}
	}
	relogged := false
	if u.sess == nil {
		// The app sends the victim to its login page: a new session
		// replaces the dead one.
		if !sleep(ctx, between(r, time.Second, 3*time.Second)) {
			return ctx.Err()
		}
		if err := s.signInHome(ctx, u); err != nil {
			return fmt.Errorf("victim %s: log in again: %w", u.ID, err)
		}
		relogged = true
		if err := s.victimBrowses(ctx, r, u, 1); err != nil {
			return fmt.Errorf("victim %s after logging in again: %w", u.ID, err)
		}
	}
	args := []any{"attack", AttackStolenCookie, "user", u.ID, "session_id", sid,
		"victim_ip", u.IP.String(), "victim_place", u.home.String(), "victim_browser", u.browser.String(),
		"attacker_ip", ip.String(), "attacker_place", src.String(), "attacker_browser", b.String(),
		"replays_accepted", replayed}
	if attackerCode != "" {
		args = append(args, "attacker_refused", attackerCode)
	}
	if victimCode != "" {
		args = append(args, "victim_refused", victimCode, "victim_logged_in_again", relogged)
		s.log.Info("stolen cookie: session replayed from abroad, interleaved with the victim's requests; session ended", args...)
	} else {
		s.log.Info("stolen cookie: session replayed from abroad, interleaved with the victim's requests; the session still works (is the detector enforcing?)", args...)
	}
	return nil
}

// travel: a user browses at home; seconds later someone with their
// password logs in from the other side of the world, with another
// browser, and browses. The detector's impossible-travel rule makes the
// later session re-authenticate, which the attacker cannot: their next
// request is refused with reauth_required, and they give up.
func (s *Simulator) travel(ctx context.Context, r *rand.Rand) error {
	u, put, err := s.takeVictim(ctx, r)
	if err != nil {
		return err
	}
	defer put()
	if err := s.victimPage(ctx, r, u); err != nil {
		return fmt.Errorf("user %s at home: %w", u.ID, err)
	}
	home := time.Now()
	if !sleep(ctx, between(r, time.Second, 3*time.Second)) {
		return ctx.Err()
	}
	src := farFrom(r, u.home, 5000, u.IP)
	if src == nil {
		return fmt.Errorf("no place far enough from %s", u.home)
	}
	ip, b := s.attackAddr(src, r), otherBrowser(r, u.browser)
	start := time.Now()
	sess, err := s.login(ctx, u.ID, ip.String(), b.ua, "", u.attrs)
	if err != nil {
		return fmt.Errorf("log in from %s: %w", src, err)
	}
	gap := start.Sub(home)
	accepted, code := 0, ""
	for range 6 {
		if !sleep(ctx, between(r, time.Second, 2*time.Second)) {
			return ctx.Err()
		}
		_, err := s.c.Validate(ctx, client.AccessRequest{Token: sess.token, IP: ip.String(), UserAgent: b.ua,
			CSRFToken: sess.csrf, Path: pickPage(r)})
		if err != nil {
			if code = s.outcome(ctx, "validate (travel)", err); code == "" {
				return fmt.Errorf("browse from %s: %w", src, err)
			}
			break
		}
		s.validates.Add(1)
		accepted++
	}
	if code == "" {
		s.abandoned.Add(1) // the attacker leaves the session
	}
	args := []any{"attack", AttackTravel, "user", u.ID, "home_ip", u.IP.String(), "home_place", u.home.String(),
		"second_session_id", sess.id, "second_ip", ip.String(), "second_place", src.String(), "second_browser", b.String(),
		"after", gap.Round(100 * time.Millisecond).String(), "distance_km", int(distanceKm(u.home, src)),
		"requests_accepted", accepted}
	if code != "" {
		s.log.Info("impossible travel: second session from the other side of the world; refused", append(args, "refused", code)...)
	} else {
		s.log.Info("impossible travel: second session from the other side of the world; it still works (is the detector enforcing?)", args...)
	}
	return nil
}

// Burst: a scraper logs in with a throwaway account from a cloud host and
// walks the catalogue with a few connections as fast as the service
// answers: at least burstMin requests, and until more than burstWindowMin
// fell within 10 seconds (the request-burst rules fire above 100), at most
// burstMax.
const (
	burstMin       = 150
	burstWindowMin = 120
	burstMax       = 500
	burstConns     = 4
)

func (s *Simulator) burst(ctx context.Context, r *rand.Rand) error {
	src := []*place{placeHosting, placeCloud}[r.IntN(2)]
	ip, ua := s.attackAddr(src, r), scraperAgents[r.IntN(len(scraperAgents))]
	acct := fmt.Sprintf("trial-%05d", 10000+r.IntN(90000))
	sess, err := s.login(ctx, acct, ip.String(), ua, "", attrsPassword)
	if err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	var (
		mu       sync.Mutex
		times    []time.Time
		peak     int // most requests within 10 s
		refused  string
		fail     error
		started  atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
		first    = 1000 + r.IntN(5000)
		began    = time.Now()
		inWindow = func(now time.Time) int {
			n := 0
			for i := len(times) - 1; i >= 0 && now.Sub(times[i]) <= 10*time.Second; i-- {
				n++
			}
			return n
		}
	)
	for range burstConns {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				i := started.Add(1)
				if i > burstMax {
					return
				}
				_, err := s.c.Validate(ctx, client.AccessRequest{Token: sess.token, IP: ip.String(), UserAgent: ua,
					Path: fmt.Sprintf("/products/%d", first+int(i))})
				mu.Lock()
				if err != nil {
					if fail == nil && refused == "" {
						if refused = s.outcome(ctx, "validate (burst)", err); refused == "" {
							fail = err
						}
					}
					stop.Store(true)
					mu.Unlock()
					return
				}
				s.validates.Add(1)
				now := time.Now()
				times = append(times, now)
				peak = max(peak, inWindow(now))
				if len(times) >= burstMin && peak > burstWindowMin {
					stop.Store(true)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if fail != nil && len(times) == 0 {
		return fmt.Errorf("scrape: %w", fail)
	}
	s.abandoned.Add(1)
	args := []any{"attack", AttackBurst, "user", acct, "session_id", sess.id, "ip", ip.String(), "place", src.String(),
		"user_agent", ua, "requests", len(times), "most_within_10s", peak, "took", time.Since(began).Round(10 * time.Millisecond).String()}
	if refused != "" {
		args = append(args, "refused", refused)
	}
	s.log.Info("burst: scraper validated one session over and over", args...)
	return nil
}

// Brute force: bruteAttempts failed logins for one user from one address,
// 0.2 to 0.8 seconds apart (the brute-force rule fires at 10 within 5
// minutes).
const bruteAttempts = 15

func (s *Simulator) bruteForce(ctx context.Context, r *rand.Rand) error {
	u := s.pool.victim(r, time.Now(), false, nil)
	if u == nil {
		return errNoVictim
	}
	src := []*place{placeTor, placeVPN, placeCloud}[r.IntN(3)]
	ip, ua := s.attackAddr(src, r), botAgents[r.IntN(len(botAgents))]
	began := time.Now()
	for i := range bruteAttempts {
		if i > 0 && !sleep(ctx, between(r, 200*time.Millisecond, 800*time.Millisecond)) {
			return ctx.Err()
		}
		if err := s.c.ReportLogin(ctx, client.LoginEvent{Failed: true, UserID: u.ID, IP: ip.String(), UserAgent: ua}); err != nil {
			s.outcome(ctx, "report failed login (brute force)", err)
			return fmt.Errorf("failed login %d: %w", i+1, err)
		}
		s.failedLogins.Add(1)
	}
	s.log.Info("brute force: failed logins for one user from one address", "attack", AttackBruteForce, "user", u.ID,
		"ip", ip.String(), "place", src.String(), "user_agent", ua, "failed_logins", bruteAttempts,
		"took", time.Since(began).Round(100*time.Millisecond).String())
	return nil
}

// Credential stuffing: failed logins for stuffingUsers distinct users
// (a leaked list of e-mail addresses, with a couple of this site's users
// in it) from one address, 50 to 300 ms apart (the credential-stuffing
// rule fires at 20 distinct users within 5 minutes).
const (
	stuffingUsers = 30
	stuffingKnown = 2 // of them users of the site
)

func (s *Simulator) stuffing(ctx context.Context, r *rand.Rand) error {
	src := []*place{placeCloud, placeCloud, placeVPN, placeHosting}[r.IntN(4)]
	ip, ua := s.attackAddr(src, r), botAgents[r.IntN(len(botAgents))]
	seen := map[string]bool{}
	var list []string
	for range stuffingKnown {
		if u := s.pool.victim(r, time.Now(), false, func(u *user) bool { return !seen[u.ID] }); u != nil {
			seen[u.ID] = true
			list = append(list, u.ID)
		}
	}
	for len(list) < stuffingUsers {
		if id := email(r); !seen[id] && !s.ids[id] {
			seen[id] = true
			list = append(list, id)
		}
	}
	r.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	began := time.Now()
	for i, id := range list {
		if i > 0 && !sleep(ctx, between(r, 50*time.Millisecond, 300*time.Millisecond)) {
			return ctx.Err()
		}
		if err := s.c.ReportLogin(ctx, client.LoginEvent{Failed: true, UserID: id, IP: ip.String(), UserAgent: ua}); err != nil {
			s.outcome(ctx, "report failed login (credential stuffing)", err)
			return fmt.Errorf("failed login %d: %w", i+1, err)
		}
		s.failedLogins.Add(1)
	}
	s.log.Info("credential stuffing: failed logins for many users from one address", "attack", AttackStuffing,
		"ip", ip.String(), "place", src.String(), "user_agent", ua, "distinct_users", len(list),
		"took", time.Since(began).Round(100*time.Millisecond).String())
	return nil
}
