// Package simulate drives realistic traffic through the session service's
// HTTP API, for the one-command demo: normal users who log in (now and
// then after a mistyped password), browse, regenerate their session,
// log out or walk away, and rounds of attacks that the detector's default
// rules (rules.Default) catch: a stolen session cookie replayed from
// abroad, impossible travel between two sessions, a request burst, brute
// force and credential stuffing.
//
// Places come from the project's GeoIP test data (Places). Each normal
// user has a home, an address of their own and a browser, and stays home:
// normal traffic stays below every default threshold (at most one action
// a second per user, no shared addresses, at most three mistyped
// passwords per user in five minutes), while each attack clearly crosses
// its rule's.
//
// Tokens are credentials: the simulator sends them to the service only,
// and never logs them.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmon/sessionmon/client"
)

// Attacks.
const (
	// AttackStolenCookie replays a victim's session token from another
	// country and browser, interleaved with the victim's own requests
	// (shared-session and in-session impossible-travel rules).
	AttackStolenCookie = "stolen_cookie"
	// AttackTravel logs a user in at home and then from the other side of
	// the world seconds later (impossible-travel rule, across sessions).
	AttackTravel = "impossible_travel"
	// AttackBurst validates one session well over 100 times within 10
	// seconds, as a scraper does (request-burst rules).
	AttackBurst = "burst"
	// AttackBruteForce reports 15 failed logins of one user from one
	// address within seconds (brute-force rule).
	AttackBruteForce = "brute_force"
	// AttackStuffing reports failed logins of 30 distinct users from one
	// address within seconds (credential-stuffing rule).
	AttackStuffing = "credential_stuffing"
)

// allAttacks are the attacks in the order they start in a round.
var allAttacks = []string{AttackStolenCookie, AttackTravel, AttackBurst, AttackBruteForce, AttackStuffing}

// Defaults and limits of Config.
const (
	DefaultUsers       = 200
	DefaultRate        = 20.0
	DefaultAttackEvery = 20 * time.Second
	// MinAttackEvery bounds Config.AttackEvery.
	MinAttackEvery = time.Second
	// MaxRate bounds Config.Rate.
	MaxRate = 10_000.0
	// MaxUsers bounds Config.Users. The homes have distinct addresses
	// for more (IPv6 ones hold 65,280 users each).
	MaxUsers = 100_000
)

// Config configures a Simulator. Zero values take the defaults.
type Config struct {
	// Client calls the session service with an app-role API key.
	Client *client.Client
	// Users is the number of simulated users (DefaultUsers when 0).
	Users int
	// Rate is the number of user actions per second across all users
	// (DefaultRate when 0). It is an upper bound: a user acts at most
	// once a second and spends time away, so few users make less.
	Rate float64
	// AttackEvery is the pause between attack rounds (DefaultAttackEvery
	// when 0); the first round starts within 3 seconds. A round of an
	// attack is skipped while its previous round still runs.
	AttackEvery time.Duration
	// Attacks lists the attacks to run: nil means all of them, an empty
	// non-nil slice none (normal traffic only).
	Attacks []string
	// Seed seeds the simulation (0: random). The same seed gives the
	// same users, homes, addresses and browsers.
	Seed int64
	// Log receives what the simulator does: each attack round at info,
	// a traffic summary every 30 seconds, problems at warn. nil discards.
	Log *slog.Logger
}

// Stats counts what the simulator did, normal traffic and attacks
// together. Calls are counted when the service accepted them; refused
// ones are in Refused.
type Stats struct {
	Logins       int64 // sessions created
	Validates    int64
	Regenerates  int64
	Logouts      int64
	Abandoned    int64 // sessions left to time out
	FailedLogins int64 // login_failed events reported
	// Refused counts calls the service refused, by error code
	// (session_revoked, reauth_required, ...).
	Refused map[string]int64
	// Attacks counts the attack rounds done, by attack.
	Attacks map[string]int64
	// Errors counts calls that got no answer from the service (transport
	// errors, gateways' pages) or failed otherwise.
	Errors int64
}

// Simulator simulates users and attackers. Its methods are safe for
// concurrent use; Run runs once at a time.
type Simulator struct {
	c           *client.Client
	rate        float64
	attackEvery time.Duration
	attacks     []string
	seed        uint64
	log         *slog.Logger
	users       []*user
	ids         map[string]bool // the users' IDs

	running atomic.Bool
	pool    *pool
	fatal   atomic.Pointer[error]
	cancel  context.CancelFunc

	logins, validates, regenerates, logouts, abandoned, failedLogins, errs atomic.Int64

	mu         sync.Mutex
	addrs      map[*place]uint64 // next attacker address, by place
	refused    map[string]int64
	rounds     map[string]int64
	warned     map[string]time.Time // last warning by kind
	suppressed map[string]int       // warnings not logged since, by kind
}

// New checks cfg and returns a simulator. Errors name the field at fault.
func New(cfg Config) (*Simulator, error) {
	if cfg.Client == nil {
		return nil, errors.New("simulate: Config.Client: required")
	}
	if cfg.Users == 0 {
		cfg.Users = DefaultUsers
	}
	if cfg.Users < 0 || cfg.Users > MaxUsers {
		return nil, fmt.Errorf("simulate: Config.Users: must be between 1 and %d, got %d", MaxUsers, cfg.Users)
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if !(cfg.Rate > 0 && cfg.Rate <= MaxRate) { // also NaN
		return nil, fmt.Errorf("simulate: Config.Rate: must be a number of actions per second in (0, %g], got %g", MaxRate, cfg.Rate)
	}
	if cfg.AttackEvery == 0 {
		cfg.AttackEvery = DefaultAttackEvery
	}
	if cfg.AttackEvery < MinAttackEvery {
		return nil, fmt.Errorf("simulate: Config.AttackEvery: must be at least %s, got %s", MinAttackEvery, cfg.AttackEvery)
	}
	attacks := allAttacks
	if cfg.Attacks != nil {
		attacks = nil
		for _, a := range cfg.Attacks {
			if !slices.Contains(allAttacks, a) {
				return nil, fmt.Errorf("simulate: Config.Attacks: unknown attack %q (want one of %s)", a, strings.Join(allAttacks, ", "))
			}
			if !slices.Contains(attacks, a) {
				attacks = append(attacks, a)
			}
		}
	}
	seed := uint64(cfg.Seed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Simulator{
		c: cfg.Client, rate: cfg.Rate, attackEvery: cfg.AttackEvery, attacks: attacks, seed: seed,
		log:     log.With("component", "simulate"),
		refused: map[string]int64{}, rounds: map[string]int64{}, warned: map[string]time.Time{}, suppressed: map[string]int{},
	}
	s.users = makeUsers(cfg.Users, s.rand(0))
	s.ids = make(map[string]bool, len(s.users))
	for _, u := range s.users {
		s.ids[u.ID] = true
	}
	return s, nil
}

// rand returns a generator of its own for stream n of the seed.
func (s *Simulator) rand(n uint64) *rand.Rand {
	return rand.New(rand.NewPCG(s.seed, n))
}

// Users returns the simulated normal users.
func (s *Simulator) Users() []User {
	out := make([]User, len(s.users))
	for i, u := range s.users {
		out[i] = u.User
	}
	return out
}

// Stats returns the counts so far.
func (s *Simulator) Stats() Stats {
	st := Stats{
		Logins: s.logins.Load(), Validates: s.validates.Load(), Regenerates: s.regenerates.Load(),
		Logouts: s.logouts.Load(), Abandoned: s.abandoned.Load(), FailedLogins: s.failedLogins.Load(),
		Errors: s.errs.Load(), Refused: map[string]int64{}, Attacks: map[string]int64{},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.refused {
		st.Refused[k] = v
	}
	for k, v := range s.rounds {
		st.Attacks[k] = v
	}
	return st
}

// workers is the number of concurrent users acted for.
func (s *Simulator) workers() int {
	return min(64, max(4, int(math.Ceil(s.rate/4))))
}

// Run simulates until ctx ends, then returns nil once every call under
// way has returned. It returns an error at once if the service refuses
// the API key.
func (s *Simulator) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("simulate: Run is already running")
	}
	defer s.running.Store(false)
	s.fatal.Store(nil)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.cancel = cancel

	start := time.Now()
	if s.pool == nil {
		// As many seconds as the users' turns take at the rate, within
		// 1 to 30 seconds.
		spread := time.Duration(float64(len(s.users)) / s.rate * float64(time.Second))
		s.pool = newPool(s.users, start, min(max(spread, time.Second), 30*time.Second), s.rand(1))
	}
	s.log.Info("simulating", "users", len(s.users), "rate", s.rate, "attacks", s.attacks, "attack_every", s.attackEvery.String())

	var wg sync.WaitGroup
	jobs := make(chan *user)
	for i := range s.workers() {
		r := s.rand(100 + uint64(i))
		wg.Go(func() {
			for u := range jobs {
				s.act(ctx, r, u)
				s.pool.put(u)
			}
		})
	}
	wg.Go(func() { s.dispatch(ctx, jobs) })
	wg.Go(func() { s.attackRounds(ctx) })
	wg.Go(func() { s.report(ctx) })
	wg.Wait()

	st := s.Stats()
	s.log.Info("simulation stopped", "logins", st.Logins, "validates", st.Validates, "logouts", st.Logouts,
		"refused", st.Refused, "attack_rounds", st.Attacks, "errors", st.Errors)
	if err := s.fatal.Load(); err != nil {
		return *err
	}
	return nil
}

// dispatch hands due users to the workers at the configured rate, and
// closes jobs when ctx ends.
func (s *Simulator) dispatch(ctx context.Context, jobs chan<- *user) {
	defer close(jobs)
	period := time.Duration(float64(time.Second) / s.rate)
	period = min(max(period, 10*time.Millisecond), 100*time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	last := time.Now()
	credit := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			credit += now.Sub(last).Seconds() * s.rate
			last = now
			// After a stall (workers all busy, a slow service), do not
			// catch up in one burst.
			credit = min(credit, max(1, s.rate/4))
			for credit >= 1 {
				u := s.pool.next(now)
				if u == nil {
					credit = 0 // nobody is due: the rate is bounded by the users
					break
				}
				select {
				case jobs <- u:
					credit--
				case <-ctx.Done():
					s.pool.put(u)
					return
				}
			}
		}
	}
}

// report logs a summary of the traffic every 30 seconds.
func (s *Simulator) report(ctx context.Context) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			st := s.Stats()
			s.log.Info("simulated traffic", "logins", st.Logins, "validates", st.Validates, "regenerates", st.Regenerates,
				"logouts", st.Logouts, "abandoned", st.Abandoned, "failed_logins", st.FailedLogins,
				"refused", st.Refused, "attack_rounds", st.Attacks, "errors", st.Errors)
		}
	}
}

// sleep waits d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// between returns a random duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// outcome classifies the error of a call and counts it: a code the
// service answered with is a refusal, anything else an error. It returns
// the code, "" when the call got no coded answer. A refused API key stops
// Run; nothing is counted once ctx has ended.
func (s *Simulator) outcome(ctx context.Context, op string, err error) (code string) {
	if ctx.Err() != nil {
		return ""
	}
	var e *client.Error
	if errors.As(err, &e) && e.Code != "" {
		s.mu.Lock()
		s.refused[e.Code]++
		s.mu.Unlock()
		switch e.Code {
		case "unauthorized":
			// The API key is wrong: nothing will work.
			ferr := fmt.Errorf("simulate: the session service refused the API key: %w", err)
			if s.fatal.CompareAndSwap(nil, &ferr) {
				s.log.Error("session service refused the API key: stopping", "err", err)
				s.cancel()
			}
		case "session_not_found", "session_expired", "session_revoked", "reauth_required", "csrf_mismatch", "session_limit_reached":
			// The simulated app handles these.
		default:
			s.warn(e.Code, "session service refused a call", "op", op, "err", err)
		}
		return e.Code
	}
	s.errs.Add(1)
	s.warn("error", "session service call failed", "op", op, "err", err)
	return ""
}

// warn logs a warning of a kind at most every 10 seconds, with how many
// of the kind were not logged.
func (s *Simulator) warn(kind, msg string, args ...any) {
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.warned[kind]) < 10*time.Second {
		s.suppressed[kind]++
		s.mu.Unlock()
		return
	}
	n := s.suppressed[kind]
	s.warned[kind], s.suppressed[kind] = now, 0
	s.mu.Unlock()
	if n > 0 {
		args = append(args, "not_logged_since", n)
	}
	s.log.Warn(msg, args...)
}
