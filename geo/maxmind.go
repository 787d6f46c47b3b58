package geo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Config says which MaxMind databases to use.
type Config struct {
	// CityDB is a GeoIP2 or GeoLite2 City database (or GeoIP2 Enterprise):
	// required.
	CityDB string
	// ASNDB is a GeoLite2 ASN (or GeoIP2 ISP) database: optional.
	ASNDB string
	// AnonymousDB is a GeoIP2 Anonymous IP (or GeoIP Anonymous Plus)
	// database: optional.
	AnonymousDB string
	// Overrides are consulted before the databases; see ParseOverrides.
	Overrides []Override
	// Log receives reload messages; nil means slog.Default().
	Log *slog.Logger
	// Verify runs the full structural check of maxminddb-golang's Verify
	// on every database opened or reloaded. It is slow (seconds for a
	// database of a few MB, proportionally more for a full City
	// database), so off by default: then only the metadata and one probe
	// lookup are checked, and a damaged record is found when looked up
	// (see LookupErrors).
	Verify bool
	// CacheSize is the number of entries of the lookup cache in front of
	// the databases (rounded up to a power of two): 0 means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
}

// DefaultCacheSize is the lookup cache's size when Config.CacheSize is 0:
// about 10 MB when full.
const DefaultCacheSize = 1 << 16

// MaxMind is a Resolver over MaxMind databases (github.com/oschwald/
// geoip2-golang/v2), with overrides consulted first. It is safe for
// concurrent use; Watch reloads databases that change on disk.
//
// Each database is read into memory (geoip2.OpenBytes) rather than
// memory-mapped: a file rewritten in place then cannot change under a
// reader (with a mapping, a truncated file faults the process), and a
// replaced reader is released by the garbage collector once no lookup uses
// it, so a reload never has to wait for in-flight lookups, nor race them.
type MaxMind struct {
	cfg  Config
	log  *slog.Logger
	over *overrideTable
	dbs  atomic.Pointer[dbSet]

	// lookupErrors counts database records that failed to decode.
	lookupErrors atomic.Uint64

	mu sync.Mutex // serialises reloads and Close
	// seen is the version of each file last read whole, loaded or not.
	seen [numRoles]fileStamp
	// missing is set while a file cannot be found, to warn once.
	missing [numRoles]bool
	closed  bool
	closing chan struct{}
}

type role int

const (
	roleCity role = iota
	roleASN
	roleAnon
	numRoles
)

func (r role) String() string {
	return [...]string{"city", "ASN", "anonymous IP"}[r]
}

// dbSet is one generation of open databases; it is never modified once
// published.
type dbSet struct {
	db [numRoles]*geoip2.Reader
	// cache holds this generation's answers; nil if disabled.
	cache *lookupCache
	// anonPlus is true when the anonymous database is GeoIP Anonymous
	// Plus rather than GeoIP2 Anonymous IP.
	anonPlus bool
}

// fileStamp identifies a version of a file: a reload happens when it
// changes.
type fileStamp struct {
	info os.FileInfo
}

func stampOf(fi os.FileInfo) fileStamp { return fileStamp{fi} }

func (s fileStamp) same(o fileStamp) bool {
	if s.info == nil || o.info == nil {
		return s.info == nil && o.info == nil
	}
	return os.SameFile(s.info, o.info) && s.info.Size() == o.info.Size() && s.info.ModTime().Equal(o.info.ModTime())
}

// Open opens the databases in cfg and returns a resolver over them. Errors
// name the file and what is wrong with it: missing, not a MaxMind DB, or a
// database of the wrong type (checked against its metadata).
func Open(cfg Config) (*MaxMind, error) {
	if cfg.CityDB == "" {
		return nil, errors.New("geo: no city database configured (CityDB)")
	}
	over, err := newOverrideTable(cfg.Overrides)
	if err != nil {
		return nil, err
	}
	m := &MaxMind{cfg: cfg, log: cfg.Log, over: over, closing: make(chan struct{})}
	if m.log == nil {
		m.log = slog.Default()
	}
	set := &dbSet{cache: newLookupCache(cfg.CacheSize)}
	for r := range numRoles {
		path := m.path(r)
		if path == "" {
			continue
		}
		db, stamp, plus, err := openDB(r, path, cfg.Verify)
		if err != nil {
			return nil, err
		}
		set.db[r], m.seen[r] = db, stamp
		if r == roleAnon {
			set.anonPlus = plus
		}
	}
	m.dbs.Store(set)
	return m, nil
}

func (m *MaxMind) path(r role) string {
	switch r {
	case roleCity:
		return m.cfg.CityDB
	case roleASN:
		return m.cfg.ASNDB
	default:
		return m.cfg.AnonymousDB
	}
}

// openDB reads path into memory and checks it holds the database type r
// needs, and with verify that it is sound throughout. stamp is the
// version of the file read, zero if it changed while being read. plus
// reports a GeoIP Anonymous Plus database.
func openDB(r role, path string, verify bool) (db *geoip2.Reader, stamp fileStamp, plus bool, err error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("geo: %s database %s: %w", r, path, fmt.Errorf(format, args...))
	}
	before, err := os.Stat(path)
	if err != nil {
		return nil, stamp, false, fail("%w", pathErr(err))
	}
	if !before.Mode().IsRegular() {
		return nil, stampOf(before), false, fail("not a regular file")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, stamp, false, fail("%w", pathErr(err))
	}
	after, err := os.Stat(path)
	if err != nil {
		return nil, stamp, false, fail("%w", pathErr(err))
	}
	if !stampOf(before).same(stampOf(after)) || int64(len(data)) != after.Size() {
		return nil, fileStamp{}, false, fail("changed while being read")
	}
	stamp = stampOf(after)
	if len(data) == 0 {
		return nil, stamp, false, fail("empty file, not a MaxMind DB")
	}
	db, err = geoip2.OpenBytes(data)
	var unknown geoip2.UnknownDatabaseTypeError
	switch {
	case errors.As(err, &unknown):
		return nil, stamp, false, fail("wrong database type %q (want %s)", unknown.DatabaseType, wantTypes(r))
	case err != nil:
		return nil, stamp, false, fail("not a valid MaxMind DB: %w", err)
	}
	dbType := db.Metadata().DatabaseType
	probe := netip.IPv4Unspecified()
	var invalid geoip2.InvalidMethodError
	switch r {
	case roleCity:
		// geoip2 allows City() on Country databases, which have no
		// coordinates: every address would be unknown.
		_, err = db.City(probe)
		if strings.Contains(dbType, "Country") {
			err = geoip2.InvalidMethodError{Method: "City", DatabaseType: dbType}
		}
	case roleASN:
		_, err = db.ASN(probe)
	case roleAnon:
		if _, err = db.AnonymousIP(probe); errors.As(err, &invalid) {
			if _, err = db.AnonymousPlus(probe); err == nil {
				plus = true
			}
		}
	}
	switch {
	case errors.As(err, &invalid):
		return nil, stamp, false, fail("wrong database type %q (want %s)", dbType, wantTypes(r))
	case err != nil:
		return nil, stamp, false, fail("corrupt MaxMind DB: %w", err)
	}
	if verify {
		mr, err := maxminddb.OpenBytes(data)
		if err == nil {
			err = mr.Verify()
		}
		if err != nil {
			return nil, stamp, false, fail("corrupt MaxMind DB: %w", err)
		}
	}
	return db, stamp, plus, nil
}

func wantTypes(r role) string {
	switch r {
	case roleCity:
		return "GeoIP2-City, GeoLite2-City or GeoIP2-Enterprise"
	case roleASN:
		return "GeoLite2-ASN or GeoIP2-ISP"
	default:
		return "GeoIP2-Anonymous-IP or GeoIP-Anonymous-Plus"
	}
}

// pathErr drops the path from an *fs.PathError, as the caller names the
// file already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Lookup implements Resolver. IPv4-mapped IPv6 addresses are looked up as
// IPv4. Overrides come first (longest prefix wins), then addresses for
// which Internal is true resolve to Location{}, then the databases: the
// city database gives Country, City, Lat, Lon and AccuracyKm, and the
// address is Known only if its record has both a country and coordinates
// (otherwise those fields stay empty); the ASN and anonymous databases add
// ASN, ASOrg and Anonymous whether or not the address is Known. The
// databases' answers are cached (Config.CacheSize) until the next reload.
func (m *MaxMind) Lookup(ip netip.Addr) Location {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return Location{}
	}
	if loc, ok := m.over.lookup(ip); ok {
		return loc
	}
	if Internal(ip) {
		return Location{}
	}
	set := m.dbs.Load()
	if loc, ok := set.cache.get(ip); ok {
		return loc
	}
	loc, ok := m.lookupDBs(set, ip)
	if ok {
		set.cache.put(ip, loc)
	}
	return loc
}

// lookupDBs asks the databases; ok is false if a record failed to decode.
func (m *MaxMind) lookupDBs(set *dbSet, ip netip.Addr) (loc Location, ok bool) {
	ok = true
	if db := set.db[roleCity]; db != nil {
		c, err := db.City(ip)
		if err != nil {
			ok = false
		} else if c.Country.ISOCode != "" && c.Location.HasCoordinates() {
			loc.Known = true
			loc.Country = c.Country.ISOCode
			loc.City = c.City.Names.English
			loc.Lat = *c.Location.Latitude
			loc.Lon = *c.Location.Longitude
			loc.AccuracyKm = float64(c.Location.AccuracyRadius)
		}
		// geoip2 v2's City traits carry only is_anycast: the legacy
		// is_anonymous_proxy and is_satellite_provider flags were removed
		// from MaxMind's databases and from geoip2 v2, so anonymity comes
		// from the anonymous database alone.
	}
	if db := set.db[roleASN]; db != nil {
		a, err := db.ASN(ip)
		if err != nil {
			ok = false
		} else {
			loc.ASN = uint32(a.AutonomousSystemNumber)
			loc.ASOrg = a.AutonomousSystemOrganization
		}
	}
	if db := set.db[roleAnon]; db != nil {
		if set.anonPlus {
			a, err := db.AnonymousPlus(ip)
			if err != nil {
				ok = false
			} else {
				loc.Anonymous = a.IsAnonymous || a.IsAnonymousVPN || a.IsHostingProvider ||
					a.IsPublicProxy || a.IsTorExitNode || a.IsResidentialProxy
			}
		} else {
			a, err := db.AnonymousIP(ip)
			if err != nil {
				ok = false
			} else {
				loc.Anonymous = a.IsAnonymous || a.IsAnonymousVPN || a.IsHostingProvider ||
					a.IsPublicProxy || a.IsTorExitNode || a.IsResidentialProxy
			}
		}
	}
	if !ok {
		m.lookupErrors.Add(1)
	}
	if loc != (Location{}) {
		loc.Source = "mmdb"
	}
	return loc, ok
}

// lookupCache is a direct-mapped cache of answers: lock-free, no
// allocation on a hit, one on a miss. Session events come from few
// addresses, so most lookups hit. Colliding addresses evict each other.
type lookupCache struct {
	entries []atomic.Pointer[cacheEntry]
	shift   uint
	seed    uint64
}

type cacheEntry struct {
	ip  netip.Addr
	loc Location
}

func newLookupCache(size int) *lookupCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultCacheSize
	}
	bitsNeeded := bits.Len(uint(size - 1))
	if bitsNeeded < 1 {
		bitsNeeded = 1
	}
	return &lookupCache{
		entries: make([]atomic.Pointer[cacheEntry], 1<<bitsNeeded),
		shift:   uint(64 - bitsNeeded),
		seed:    rand.Uint64() | 1,
	}
}

func (c *lookupCache) slot(ip netip.Addr) *atomic.Pointer[cacheEntry] {
	a := ip.As16()
	h := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:])
	h = (h ^ c.seed) * 0xbf58476d1ce4e5b9
	return &c.entries[h>>c.shift]
}

func (c *lookupCache) get(ip netip.Addr) (Location, bool) {
	if c == nil {
		return Location{}, false
	}
	if e := c.slot(ip).Load(); e != nil && e.ip == ip {
		return e.loc, true
	}
	return Location{}, false
}

func (c *lookupCache) put(ip netip.Addr, loc Location) {
	if c != nil {
		c.slot(ip).Store(&cacheEntry{ip, loc})
	}
}

// LookupErrors is how many database records failed to decode since Open
// (a corrupt database); such lookups treat that database as not knowing
// the address.
func (m *MaxMind) LookupErrors() uint64 { return m.lookupErrors.Load() }

// Watch polls the databases' files every interval until ctx is done or
// Close is called, and reopens those whose size, modification time or
// identity (a file renamed over it) changed. New readers are swapped in
// atomically: a lookup sees either the old databases or the new ones. A
// file that fails to open (missing, half-written, corrupt, wrong type)
// is logged as a warning and the old database is kept; it is tried again
// when the file changes again. Write new databases to a temporary file and
// rename it over the old one, as geoipupdate does. Watch blocks: run it in
// its own goroutine.
func (m *MaxMind) Watch(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.closing:
			return
		case <-t.C:
			m.Reload()
		}
	}
}

// Reload reopens the database files that changed since they were last
// read (see Watch) and reports whether anything was swapped in. Watch calls
// it; it is exported for callers that want to reload on a signal.
func (m *MaxMind) Reload() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	next := *m.dbs.Load()
	changed := false
	for r := range numRoles {
		path := m.path(r)
		if path == "" {
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			if !m.missing[r] {
				m.log.Warn("geo: database file unavailable, keeping the loaded one",
					"db", r.String(), "path", path, "err", pathErr(err))
				m.missing[r] = true
			}
			continue
		}
		m.missing[r] = false
		if stampOf(fi).same(m.seen[r]) {
			continue
		}
		db, stamp, plus, err := openDB(r, path, m.cfg.Verify)
		if stamp.info != nil {
			// A consistent read: do not try this version again. (A
			// file that changed while being read is retried next time.)
			m.seen[r] = stamp
		}
		if err != nil {
			m.log.Warn("geo: database reload failed, keeping the loaded one",
				"db", r.String(), "path", path, "err", err)
			continue
		}
		next.db[r] = db
		if r == roleAnon {
			next.anonPlus = plus
		}
		changed = true
		md := db.Metadata()
		m.log.Info("geo: database reloaded", "db", r.String(), "path", path,
			"type", md.DatabaseType, "built", md.BuildTime().UTC())
	}
	if !changed {
		return false
	}
	next.cache = newLookupCache(m.cfg.CacheSize)
	// Swap in the new generation, with an empty cache. The readers it replaces are not Closed:
	// lookups that loaded the old generation may still be reading them,
	// and closing a reader under them would race; being in-memory, they
	// are released by the garbage collector once the last such lookup is
	// done.
	m.dbs.Store(&next)
	return true
}

// Close stops Watch and releases the databases; lookups after Close use
// only the overrides. Close is idempotent.
func (m *MaxMind) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	close(m.closing)
	m.dbs.Store(&dbSet{})
	return nil
}

var _ Resolver = (*MaxMind)(nil)
