package simulate

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// browser is a user agent with the browser family and OS it claims.
type browser struct {
	family string // Chrome, Firefox, Safari, Edge
	os     string // Windows, macOS, iOS, Android
	ua     string
	weight int
}

func (b browser) String() string { return b.family + " on " + b.os }

// browsers are current desktop and mobile user agents, weighted roughly
// by market share.
var browsers = []browser{
	{"Chrome", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36", 14},
	{"Chrome", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36", 6},
	{"Chrome", "macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36", 8},
	{"Chrome", "Android", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Mobile Safari/537.36", 14},
	{"Chrome", "Android", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Mobile Safari/537.36", 5},
	{"Chrome", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/138.0.7204.119 Mobile/15E148 Safari/604.1", 3},
	{"Safari", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1", 14},
	{"Safari", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1", 3},
	{"Safari", "iOS", "Mozilla/5.0 (iPad; CPU OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1", 2},
	{"Safari", "macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Safari/605.1.15", 6},
	{"Edge", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36 Edg/138.0.0.0", 8},
	{"Edge", "macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36 Edg/138.0.0.0", 1},
	{"Firefox", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0", 5},
	{"Firefox", "macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:140.0) Gecko/20100101 Firefox/140.0", 2},
	{"Firefox", "Android", "Mozilla/5.0 (Android 15; Mobile; rv:140.0) Gecko/140.0 Firefox/140.0", 1},
	{"Firefox", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/140.0 Mobile/15E148 Safari/605.1.15", 1},
}

// Non-browser user agents of the attacks.
var (
	scraperAgents = []string{
		"python-requests/2.32.3",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/138.0.0.0 Safari/537.36",
		"Scrapy/2.13.3 (+https://scrapy.org)",
	}
	// Password-guessing and credential-stuffing tools send a dated
	// browser user agent, or their HTTP library's.
	botAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:102.0) Gecko/20100101 Firefox/102.0",
		"python-requests/2.31.0",
		"Go-http-client/1.1",
	}
)

// pickWeighted returns an index of weights chosen in proportion to them.
func pickWeighted(r *rand.Rand, n int, weight func(int) int) int {
	total := 0
	for i := range n {
		total += weight(i)
	}
	x := r.IntN(total)
	for i := range n {
		if x -= weight(i); x < 0 {
			return i
		}
	}
	return n - 1
}

func pickBrowser(r *rand.Rand) browser {
	return browsers[pickWeighted(r, len(browsers), func(i int) int { return browsers[i].weight })]
}

// otherBrowser returns a browser of another family than b's.
func otherBrowser(r *rand.Rand, b browser) browser {
	for {
		if o := pickBrowser(r); o.family != b.family {
			return o
		}
	}
}

// Names for e-mail user IDs and the credential-stuffing lists.
var (
	firstNames = []string{"alice", "ben", "chloe", "daniel", "emma", "felix", "grace", "hugo", "isabel", "jack",
		"kenji", "laura", "mateo", "nina", "oliver", "priya", "quentin", "rosa", "samuel", "tara", "umar",
		"valentina", "william", "xin", "yusuf", "zoe", "ana", "lucas", "sofia", "marco", "hannah", "leon"}
	lastNames = []string{"smith", "jones", "taylor", "brown", "martin", "bernard", "dubois", "muller", "schmidt",
		"garcia", "silva", "santos", "tanaka", "sato", "suzuki", "lee", "tan", "wong", "nguyen", "walker",
		"wilson", "clarke", "patel", "khan", "rossi", "costa", "novak", "kowalski", "jensen", "murphy"}
	mailDomains = []string{"example.com", "example.net", "example.org", "mail.example.com", "example.co.uk"}
)

// email returns a plausible address.
func email(r *rand.Rand) string {
	f, l := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
	d := mailDomains[r.IntN(len(mailDomains))]
	switch r.IntN(4) {
	case 0:
		return fmt.Sprintf("%s.%s@%s", f, l, d)
	case 1:
		return fmt.Sprintf("%s%s%d@%s", f[:1], l, r.IntN(100), d)
	case 2:
		return fmt.Sprintf("%s_%s%d@%s", f, l, 1960+r.IntN(50), d)
	default:
		return fmt.Sprintf("%s.%s%d@%s", f, l, r.IntN(1000), d)
	}
}

// User is a simulated normal user: a stable home, address and browser.
type User struct {
	ID        string
	Place     Place
	IP        netip.Addr
	UserAgent string
}

// session is a session a simulated browser holds. The token is a
// credential: never log it or put it in an error.
type session struct {
	token string
	csrf  string
	id    string
}

// user is a simulated user with their state. Whoever took the user from
// the pool (a worker or an attack) owns the mutable fields until it puts
// the user back.
type user struct {
	User
	home    *place
	browser browser
	attrs   map[string]string // of the sessions: how the user logs in

	sess *session
	// stale is the token of a session the service ended while the
	// browser still holds its cookie: the next login replaces it.
	stale string
	// retype: the last login attempt was a mistyped password; the next
	// action is the second, successful, attempt.
	retype bool
	// failed are the times of this user's own mistyped passwords, kept
	// for five minutes to stay clear of the brute-force rule.
	failed []time.Time

	// Guarded by the pool's mutex.
	next     time.Time // not before: the user reads, types or is away
	attacked time.Time // when an attack last used this user
	index    int       // in the pool's heap; -1 while taken
}

// Session attributes (shared, never modified).
var (
	attrsPassword = map[string]string{"auth_method": "password"}
	attrsTOTP     = map[string]string{"auth_method": "password+totp"}
)

// makeUsers builds n users: IDs, homes (distinct addresses), browsers.
func makeUsers(n int, r *rand.Rand) []*user {
	var homes []*place
	for _, p := range places {
		if p.weight > 0 {
			homes = append(homes, p)
		}
	}
	used := make([]int, len(homes))
	perms := make([][]int, len(homes))
	for i, p := range homes {
		if !p.v6 {
			perms[i] = r.Perm(p.userCapacity())
		}
	}
	ids := map[string]bool{}
	users := make([]*user, 0, n)
	width := max(4, len(fmt.Sprint(n)))
	for i := range n {
		var id string
		if r.IntN(10) < 3 {
			for id == "" || ids[id] {
				id = email(r)
			}
		} else {
			id = fmt.Sprintf("u-%0*d", width, i+1)
		}
		ids[id] = true
		h := pickWeighted(r, len(homes), func(j int) int {
			if used[j] >= homes[j].userCapacity() {
				return 0
			}
			return homes[j].weight
		})
		p := homes[h]
		b := pickBrowser(r)
		attrs := attrsPassword
		if r.IntN(10) < 3 {
			attrs = attrsTOTP
		}
		users = append(users, &user{
			User:    User{ID: id, Place: p.Place, IP: p.userAddr(used[h], perms[h], r), UserAgent: b.ua},
			home:    p,
			browser: b,
			attrs:   attrs,
			index:   -1,
		})
		used[h]++
	}
	return users
}

// pool holds the users nobody is acting for, by when they act next.
type pool struct {
	mu   sync.Mutex
	idle userHeap
}

// newPool makes the pool of users, who come online over spread, not all
// at once.
func newPool(users []*user, start time.Time, spread time.Duration, r *rand.Rand) *pool {
	p := &pool{}
	for _, u := range users {
		u.next = start.Add(time.Duration(r.Int64N(int64(spread))))
		heap.Push(&p.idle, u)
	}
	return p
}

// next takes the user due first, if one is due at now.
func (p *pool) next(now time.Time) *user {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 || p.idle[0].next.After(now) {
		return nil
	}
	return heap.Pop(&p.idle).(*user)
}

// put gives a user back, to act again at u.next.
func (p *pool) put(u *user) {
	p.mu.Lock()
	defer p.mu.Unlock()
	heap.Push(&p.idle, u)
}

// attackCooldown is how long an attack leaves a user alone before another
// one picks them: the detector's rules stay quiet for a user (or session,
// or address) for their cooldown, 10 minutes by default, after firing.
const attackCooldown = 11 * time.Minute

// victim picks a user for an attack: a random one of those no attack used
// within attackCooldown, else the one attacked longest ago. ok says which
// users will do. With take, the user is taken from the pool (the caller
// puts them back); else only marked. It returns nil when no user will do.
func (p *pool) victim(r *rand.Rand, now time.Time, take bool, ok func(*user) bool) *user {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pick, oldest *user
	n := 0
	for _, u := range p.idle {
		if ok != nil && !ok(u) {
			continue
		}
		if now.Sub(u.attacked) >= attackCooldown {
			n++
			if r.IntN(n) == 0 {
				pick = u
			}
		} else if oldest == nil || u.attacked.Before(oldest.attacked) {
			oldest = u
		}
	}
	if pick == nil {
		pick = oldest
	}
	if pick == nil {
		return nil
	}
	pick.attacked = now
	if take {
		heap.Remove(&p.idle, pick.index)
	}
	return pick
}

// userHeap is a min-heap of users by next.
type userHeap []*user

func (h userHeap) Len() int           { return len(h) }
func (h userHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h userHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *userHeap) Push(x any) {
	u := x.(*user)
	u.index = len(*h)
	*h = append(*h, u)
}
func (h *userHeap) Pop() any {
	old := *h
	u := old[len(old)-1]
	old[len(old)-1] = nil
	u.index = -1
	*h = old[:len(old)-1]
	return u
}

// pages are what a signed-in user browses; the number is filled in.
var pages = []struct {
	path   string
	weight int
}{
	{"/", 6}, {"/account", 5}, {"/orders", 4}, {"/orders/%d", 6}, {"/products/%d", 12},
	{"/cart", 4}, {"/search", 5}, {"/messages", 2}, {"/wishlist", 2}, {"/checkout", 1},
	{"/account/addresses", 1}, {"/help/returns", 1},
}

func pickPage(r *rand.Rand) string {
	p := pages[pickWeighted(r, len(pages), func(i int) int { return pages[i].weight })].path
	if strings.Contains(p, "%d") {
		return fmt.Sprintf(p, 1000+r.IntN(9000))
	}
	return p
}
