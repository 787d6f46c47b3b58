package geo_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
)

func openTest(t testing.TB, cfg geo.Config) *geo.MaxMind {
	t.Helper()
	m, err := geo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func openAll(t testing.TB, overrides ...geo.Override) *geo.MaxMind {
	t.Helper()
	p := geotest.MustBuild(t)
	return openTest(t, geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous, Overrides: overrides})
}

func TestLookup(t *testing.T) {
	p := geotest.MustBuild(t)
	cached := openTest(t, geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous})
	uncached := openTest(t, geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous, CacheSize: -1})
	tiny := openTest(t, geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous, CacheSize: 1})
	tests := []struct {
		name, ip string
		want     geo.Location
	}{
		{"London, MaxMind's test range", "81.2.69.142",
			geo.Location{Known: true, Country: "GB", City: "London", Lat: 51.5074, Lon: -0.1278, AccuracyKm: 20, ASN: 20712, ASOrg: "Andrews & Arnold Ltd", Source: "mmdb"}},
		{"city without ASN", "2.125.160.216",
			geo.Location{Known: true, Country: "GB", City: "Boxford", Lat: 51.75, Lon: -1.25, AccuracyKm: 100, Source: "mmdb"}},
		{"London", "192.0.2.10",
			geo.Location{Known: true, Country: "GB", City: "London", Lat: 51.5074, Lon: -0.1278, AccuracyKm: 20, ASN: 64496, ASOrg: "Example Broadband UK", Source: "mmdb"}},
		{"Manchester", "192.0.2.100",
			geo.Location{Known: true, Country: "GB", City: "Manchester", Lat: 53.4808, Lon: -2.2426, AccuracyKm: 20, ASN: 64496, ASOrg: "Example Broadband UK", Source: "mmdb"}},
		{"Paris, UTF-8 AS name", "192.0.2.129",
			geo.Location{Known: true, Country: "FR", City: "Paris", Lat: 48.8566, Lon: 2.3522, AccuracyKm: 10, ASN: 64497, ASOrg: "Exemple Télécom", Source: "mmdb"}},
		{"Sydney", "198.51.100.130",
			geo.Location{Known: true, Country: "AU", City: "Sydney", Lat: -33.8688, Lon: 151.2093, AccuracyKm: 20, ASN: 64500, ASOrg: "Example Telco AU", Source: "mmdb"}},
		{"Sydney, 1000 km radius", "198.51.100.200",
			geo.Location{Known: true, Country: "AU", City: "Sydney", Lat: -33.8688, Lon: 151.2093, AccuracyKm: 1000, ASN: 64500, ASOrg: "Example Telco AU", Source: "mmdb"}},
		{"São Paulo", "203.0.113.65",
			geo.Location{Known: true, Country: "BR", City: "São Paulo", Lat: -23.5505, Lon: -46.6333, AccuracyKm: 50, ASN: 64502, ASOrg: "Exemplo Telecom BR", Source: "mmdb"}},
		{"VPN", "203.0.113.200",
			geo.Location{Known: true, Country: "NL", City: "Amsterdam", Lat: 52.3676, Lon: 4.9041, AccuracyKm: 50, ASN: 9009, ASOrg: "M247 Europe SRL", Anonymous: true, Source: "mmdb"}},
		{"hosting", "203.0.113.230",
			geo.Location{Known: true, Country: "US", City: "Ashburn", Lat: 39.0438, Lon: -77.4874, AccuracyKm: 1000, ASN: 16509, ASOrg: "AMAZON-02", Anonymous: true, Source: "mmdb"}},
		{"Tor exit, country-level place", "203.0.113.250",
			geo.Location{Known: true, Country: "DE", Lat: 51.2993, Lon: 9.491, AccuracyKm: 1000, ASN: 64504, ASOrg: "Example Tor Relays e.V.", Anonymous: true, Source: "mmdb"}},
		{"real-looking hosting range", "3.5.141.7",
			geo.Location{Known: true, Country: "KR", City: "Seoul", Lat: 37.5665, Lon: 126.978, AccuracyKm: 1000, ASN: 16509, ASOrg: "AMAZON-02", Anonymous: true, Source: "mmdb"}},
		{"country without coordinates: unknown", "198.18.0.1", geo.Location{}},
		{"ASN only: unknown place, ASN kept", "198.18.1.1",
			geo.Location{ASN: 64505, ASOrg: "Example Transit", Source: "mmdb"}},
		{"proxy without place: unknown place, anonymous kept", "198.18.2.1",
			geo.Location{ASN: 64506, ASOrg: "Example Proxies", Anonymous: true, Source: "mmdb"}},
		{"IPv6 London", "2001:db8:1::42",
			geo.Location{Known: true, Country: "GB", City: "London", Lat: 51.5074, Lon: -0.1278, AccuracyKm: 20, ASN: 64496, ASOrg: "Example Broadband UK", Source: "mmdb"}},
		{"IPv6 VPN", "2001:db8:3:ffff::1",
			geo.Location{Known: true, Country: "NL", City: "Amsterdam", Lat: 52.3676, Lon: 4.9041, AccuracyKm: 50, ASN: 9009, ASOrg: "M247 Europe SRL", Anonymous: true, Source: "mmdb"}},
		{"IPv6 /32, no city", "2001:218:1234::1",
			geo.Location{Known: true, Country: "JP", Lat: 35.69, Lon: 139.69, AccuracyKm: 100, ASN: 2914, ASOrg: "NTT-COMMUNICATIONS-2914", Source: "mmdb"}},
		{"IPv4-mapped IPv6 of a public address: as IPv4", "::ffff:192.0.2.10",
			geo.Location{Known: true, Country: "GB", City: "London", Lat: 51.5074, Lon: -0.1278, AccuracyKm: 20, ASN: 64496, ASOrg: "Example Broadband UK", Source: "mmdb"}},
		{"6to4 of a public address: the database's alias", "2002:c000:20a::1",
			geo.Location{Known: true, Country: "GB", City: "London", Lat: 51.5074, Lon: -0.1278, AccuracyKm: 20, ASN: 64496, ASOrg: "Example Broadband UK", Source: "mmdb"}},
		{"unknown public IPv4", "8.8.8.8", geo.Location{}},
		{"unknown public IPv4 next to a range", "192.0.3.1", geo.Location{}},
		{"unknown public IPv6", "2606:4700:4700::1111", geo.Location{}},
		{"unknown documentation IPv6", "2001:db8:ffff::1", geo.Location{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice each: a miss, then a hit (but in tiny, which the
			// other addresses keep evicting from).
			for _, m := range []*geo.MaxMind{cached, uncached, tiny, cached, uncached, tiny} {
				if got := m.Lookup(netip.MustParseAddr(tt.ip)); got != tt.want {
					t.Errorf("Lookup(%s)\n got %+v\nwant %+v", tt.ip, got, tt.want)
				}
			}
		})
	}
}

// TestLookupCSV looks up an address inside every network of the CSV and
// checks each column comes back.
func TestLookupCSV(t *testing.T) {
	m := openAll(t)
	f, err := os.Open(geotest.CSVPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 21 {
		t.Fatalf("only %d rows", len(rows))
	}
	kinds := map[string]int{}
	for _, row := range rows[1:] {
		p := netip.MustParsePrefix(row[0])
		// The first and last addresses, to check the whole range is
		// covered.
		b := p.Addr().AsSlice()
		for i := p.Bits(); i < p.Addr().BitLen(); i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		last, _ := netip.AddrFromSlice(b)
		for _, ip := range []netip.Addr{p.Addr(), last} {
			got := m.Lookup(ip)
			country, city, lat, lon, acc, asn, org, anon := row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8]
			known := country != "" && lat != ""
			if got.Known != known {
				t.Errorf("%s (%s): Known %v, want %v", ip, p, got.Known, known)
				continue
			}
			if known {
				kinds["place"]++
				wlat, _ := strconv.ParseFloat(lat, 64)
				wlon, _ := strconv.ParseFloat(lon, 64)
				wacc, _ := strconv.ParseFloat(acc, 64)
				if got.Country != country || got.City != city || got.Lat != wlat || got.Lon != wlon || got.AccuracyKm != wacc {
					t.Errorf("%s (%s): got %+v, want %s %q %s,%s ±%s", ip, p, got, country, city, lat, lon, acc)
				}
			} else if got.Country != "" || got.City != "" || got.Lat != 0 || got.Lon != 0 || got.AccuracyKm != 0 {
				t.Errorf("%s (%s): unknown but placed: %+v", ip, p, got)
			}
			wasn, _ := strconv.ParseUint(asn, 10, 32)
			if got.ASN != uint32(wasn) || got.ASOrg != org {
				t.Errorf("%s (%s): AS%d %q, want AS%s %q", ip, p, got.ASN, got.ASOrg, asn, org)
			}
			if got.Anonymous != (anon != "") {
				t.Errorf("%s (%s): Anonymous %v, want %q", ip, p, got.Anonymous, anon)
			}
			if anon != "" {
				kinds[anon]++
			}
			if p.Addr().Is6() {
				kinds["ipv6"]++
			}
			if (got != geo.Location{}) && got.Source != "mmdb" {
				t.Errorf("%s: Source %q", ip, got.Source)
			}
		}
	}
	for _, k := range []string{"place", "vpn", "hosting", "tor", "proxy", "ipv6"} {
		if kinds[k] == 0 {
			t.Errorf("the CSV has no %s row", k)
		}
	}
}

func TestLookupInternal(t *testing.T) {
	m := openAll(t)
	for _, ip := range []string{
		"10.1.2.3", "172.16.0.1", "192.168.1.1", // private
		"127.0.0.1", "::1", // loopback
		"100.64.0.1", "100.127.255.254", // CGNAT
		"169.254.1.1", "fe80::1", "fe80::1%eth0", // link-local
		"0.0.0.0", "::", // unspecified
		"224.0.0.1", "ff02::1", // multicast
		"fd12:3456::1",                                             // unique local
		"::ffff:10.1.2.3", "::ffff:127.0.0.1", "::ffff:100.64.0.1", // IPv4-mapped
	} {
		if got := m.Lookup(netip.MustParseAddr(ip)); got != (geo.Location{}) {
			t.Errorf("Lookup(%s) = %+v, want nothing", ip, got)
		}
	}
	if got := m.Lookup(netip.Addr{}); got != (geo.Location{}) {
		t.Errorf("Lookup(invalid) = %+v", got)
	}
}

func TestLookupOverrides(t *testing.T) {
	overrides, err := geo.ParseOverrides("overrides.yaml", strings.NewReader(`
overrides:
  - cidr: 10.20.0.0/16
    country: GB
    city: London office
    lat: 51.5
    lon: -0.12
    accuracy_km: 5
  - cidr: 10.20.5.0/24
    country: FR
    city: Paris office
    lat: 48.8566
    lon: 2.3522
  - cidr: 100.64.0.0/10
    anonymous: true
  - cidr: 192.0.2.0/28       # inside the database's London /26
    country: IE
    city: Dublin office
    lat: 53.3498
    lon: -6.2603
    accuracy_km: 1
  - cidr: 198.51.100.0/24    # VPN egress the database places in New York
    anonymous: true
  - cidr: fd00:20::/32
    country: DE
    lat: 50.1109
    lon: 8.6821
`))
	if err != nil {
		t.Fatal(err)
	}
	m := openAll(t, overrides...)
	london := geo.Location{Known: true, Country: "GB", City: "London office", Lat: 51.5, Lon: -0.12, AccuracyKm: 5, Source: "override"}
	paris := geo.Location{Known: true, Country: "FR", City: "Paris office", Lat: 48.8566, Lon: 2.3522, Source: "override"}
	dublin := geo.Location{Known: true, Country: "IE", City: "Dublin office", Lat: 53.3498, Lon: -6.2603, AccuracyKm: 1, Source: "override"}
	vpn := geo.Location{Anonymous: true, Source: "override"}
	tests := []struct {
		ip   string
		want geo.Location
	}{
		{"10.20.0.1", london}, // private space, placed
		{"10.20.255.255", london},
		{"::ffff:10.20.1.1", london}, // IPv4-mapped
		{"10.20.5.7", paris},         // longest prefix wins
		{"10.21.0.1", geo.Location{}},
		{"100.64.0.1", vpn}, // CGNAT, anonymous only: not Known
		{"100.127.255.255", vpn},
		{"192.0.2.1", dublin}, // beats the database
		{"192.0.2.15", dublin},
		{"192.0.2.16", geo.Location{Known: true, Country: "GB", City: "London", Lat: 51.5074, Lon: -0.1278, AccuracyKm: 20, ASN: 64496, ASOrg: "Example Broadband UK", Source: "mmdb"}},
		{"198.51.100.5", vpn}, // authoritative: no database data
		{"fd00:20:1::1", geo.Location{Known: true, Country: "DE", Lat: 50.1109, Lon: 8.6821, Source: "override"}},
		{"fd00:21::1", geo.Location{}},
	}
	for _, tt := range tests {
		if got := m.Lookup(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Lookup(%s)\n got %+v\nwant %+v", tt.ip, got, tt.want)
		}
	}
}

func TestOpenOverrideErrors(t *testing.T) {
	p := geotest.MustBuild(t)
	loc := geo.Location{Known: true, Country: "GB", Lat: 1, Lon: 1}
	for _, tt := range []struct {
		overrides []geo.Override
		want      string
	}{
		{[]geo.Override{{netip.MustParsePrefix("10.0.0.1/8"), loc}}, "geo: override 0: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)"},
		{[]geo.Override{{netip.Prefix{}, loc}}, "geo: override 0: invalid prefix"},
		{[]geo.Override{{netip.MustParsePrefix("10.0.0.0/8"), loc}, {netip.MustParsePrefix("10.0.0.0/8"), loc}}, "geo: override 1: duplicate 10.0.0.0/8"},
	} {
		_, err := geo.Open(geo.Config{CityDB: p.City, Overrides: tt.overrides})
		if err == nil || err.Error() != tt.want {
			t.Errorf("Open with %v: %v, want %s", tt.overrides, err, tt.want)
		}
	}
}

func TestOpenOnlyCity(t *testing.T) {
	p := geotest.MustBuild(t)
	m := openTest(t, geo.Config{CityDB: p.City})
	got := m.Lookup(netip.MustParseAddr("203.0.113.200"))
	want := geo.Location{Known: true, Country: "NL", City: "Amsterdam", Lat: 52.3676, Lon: 4.9041, AccuracyKm: 50, Source: "mmdb"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	p := geotest.MustBuild(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	city, err := os.ReadFile(p.City)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.mmdb")
	garbage := write("garbage.mmdb", bytes.Repeat([]byte("not a database\n"), 100))
	empty := write("empty.mmdb", nil)
	truncated := write("truncated.mmdb", city[:len(city)/2])
	// Damage the search tree and data section but keep the metadata.
	corrupt := append([]byte(nil), city...)
	for i := 0; i < len(corrupt)/2; i++ {
		corrupt[i] = 0xff
	}
	corruptPath := write("corrupt.mmdb", corrupt)

	tests := []struct {
		name string
		cfg  geo.Config
		want string // exact error
	}{
		{"no city database", geo.Config{ASNDB: p.ASN}, "geo: no city database configured (CityDB)"},
		{"missing city", geo.Config{CityDB: missing},
			"geo: city database " + missing + ": no such file or directory"},
		{"missing ASN", geo.Config{CityDB: p.City, ASNDB: missing},
			"geo: ASN database " + missing + ": no such file or directory"},
		{"missing anonymous", geo.Config{CityDB: p.City, AnonymousDB: missing},
			"geo: anonymous IP database " + missing + ": no such file or directory"},
		{"ASN as city", geo.Config{CityDB: p.ASN},
			`geo: city database ` + p.ASN + `: wrong database type "GeoLite2-ASN" (want GeoIP2-City, GeoLite2-City or GeoIP2-Enterprise)`},
		{"anonymous as city", geo.Config{CityDB: p.Anonymous},
			`geo: city database ` + p.Anonymous + `: wrong database type "GeoIP2-Anonymous-IP" (want GeoIP2-City, GeoLite2-City or GeoIP2-Enterprise)`},
		{"city as ASN", geo.Config{CityDB: p.City, ASNDB: p.City},
			`geo: ASN database ` + p.City + `: wrong database type "GeoIP2-City" (want GeoLite2-ASN or GeoIP2-ISP)`},
		{"ASN as anonymous", geo.Config{CityDB: p.City, AnonymousDB: p.ASN},
			`geo: anonymous IP database ` + p.ASN + `: wrong database type "GeoLite2-ASN" (want GeoIP2-Anonymous-IP or GeoIP-Anonymous-Plus)`},
		{"not a database", geo.Config{CityDB: garbage},
			"geo: city database " + garbage + ": not a valid MaxMind DB: error opening database: invalid MaxMind DB file"},
		{"empty", geo.Config{CityDB: empty},
			"geo: city database " + empty + ": empty file, not a MaxMind DB"},
		{"truncated", geo.Config{CityDB: truncated},
			"geo: city database " + truncated + ": not a valid MaxMind DB: error opening database: invalid MaxMind DB file"},
		{"directory", geo.Config{CityDB: dir},
			"geo: city database " + dir + ": not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := geo.Open(tt.cfg)
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
	if _, err := geo.Open(geo.Config{CityDB: missing}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v is not fs.ErrNotExist", err)
	}
	// A damaged tree with intact metadata: Verify finds it...
	want := "geo: city database " + corruptPath + ": corrupt MaxMind DB: the MaxMind DB file's search tree is corrupt"
	if _, err := geo.Open(geo.Config{CityDB: corruptPath, Verify: true}); err == nil || err.Error() != want {
		t.Errorf("Open with Verify: %v, want %s", err, want)
	}
	// ...and all the sound databases pass it.
	openTest(t, geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous, Verify: true})
	// Without Verify the file opens (the format has no checksum), but
	// lookups must not panic, and errors are counted.
	if m, err := geo.Open(geo.Config{CityDB: corruptPath}); err == nil {
		for _, ip := range []string{"81.2.69.142", "192.0.2.1", "2001:db8:1::1", "8.8.8.8"} {
			m.Lookup(netip.MustParseAddr(ip))
		}
		t.Logf("lookup errors from the damaged database: %d", m.LookupErrors())
		m.Close()
	} else if !strings.Contains(err.Error(), corruptPath) {
		t.Errorf("corrupt file error does not name it: %v", err)
	}
}

// logBuffer is an slog handler target safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// buildCSV builds databases from CSV text into a new directory.
func buildCSV(t *testing.T, text string) geotest.Paths {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "networks.csv")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := geotest.Build(path, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Rewritten in place (truncate and write), the hardest case for a
	// reader: the resolver must never see a half-written file.
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchReload(t *testing.T) {
	const header = "network,country,city,lat,lon,accuracy_km,asn,as_org,anonymous\n"
	v1 := buildCSV(t, header+"192.0.2.0/24,GB,London,51.5074,-0.1278,20,64496,Example UK,\n")
	v2 := buildCSV(t, header+
		"192.0.2.0/24,FR,Paris,48.8566,2.3522,10,64497,Example FR,\n"+
		"198.51.100.0/24,US,New York,40.7128,-74.006,10,64499,Example US,\n")
	v3 := buildCSV(t, header+"192.0.2.0/24,JP,Tokyo,35.6762,139.6503,20,64501,Example JP,\n")

	var logs logBuffer
	m := openTest(t, geo.Config{
		CityDB: v1.City, ASNDB: v1.ASN,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ip := netip.MustParseAddr("192.0.2.1")
	if got := m.Lookup(ip); got.City != "London" {
		t.Fatalf("v1: %+v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		m.Watch(ctx, 20*time.Millisecond)
		close(watchDone)
	}()
	t.Cleanup(func() {
		cancel()
		<-watchDone
	})

	// Lookups run throughout, to let the race detector see the swaps.
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if got := m.Lookup(ip); !got.Known {
					t.Errorf("lookup during reload: %+v", got)
					return
				}
			}
		}()
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	// v2 over the city file only: the city data changes, the ASN
	// database is still v1's.
	copyFile(t, v2.City, v1.City)
	eventually(t, "the v2 city database", func() bool { return m.Lookup(ip).City == "Paris" })
	if got := m.Lookup(ip); got.Country != "FR" || got.ASN != 64496 {
		t.Errorf("after city reload: %+v", got)
	}
	if got := m.Lookup(netip.MustParseAddr("198.51.100.1")); got.City != "New York" {
		t.Errorf("new network: %+v", got)
	}

	// A broken file is refused with a warning naming it; v2 stays.
	mark := len(logs.String())
	if err := os.WriteFile(v1.City, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	// (The watcher may also catch the file empty, truncated before the
	// write, and say so.)
	want := "reload failed, keeping the loaded one\" db=city path=" + v1.City +
		" err=\"geo: city database " + v1.City + ": not a valid MaxMind DB"
	eventually(t, "a reload warning", func() bool { return strings.Contains(logs.String()[mark:], want) })
	if got := m.Lookup(ip); got.City != "Paris" {
		t.Errorf("after a failed reload: %+v", got)
	}
	// The wrong type is refused too.
	mark = len(logs.String())
	copyFile(t, v3.ASN, v1.City)
	want = `wrong database type \"GeoLite2-ASN\"`
	eventually(t, "a wrong-type warning", func() bool { return strings.Contains(logs.String()[mark:], want) })
	if got := m.Lookup(ip); got.City != "Paris" {
		t.Errorf("after a wrong-type reload: %+v", got)
	}

	// Renamed into place, as geoipupdate does, both files.
	for _, f := range [][2]string{{v3.City, v1.City}, {v3.ASN, v1.ASN}} {
		tmp := f[1] + ".tmp"
		copyFile(t, f[0], tmp)
		if err := os.Rename(tmp, f[1]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the v3 databases", func() bool {
		got := m.Lookup(ip)
		return got.City == "Tokyo" && got.ASN == 64501
	})
	if got := m.Lookup(netip.MustParseAddr("198.51.100.1")); got.Known {
		t.Errorf("removed network still known: %+v", got)
	}

	// A file that disappears keeps the loaded database, with one warning.
	mark = len(logs.String())
	if err := os.Remove(v1.ASN); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a missing-file warning", func() bool {
		return strings.Contains(logs.String()[mark:], "database file unavailable")
	})
	m.Reload()
	m.Reload()
	if n := strings.Count(logs.String()[mark:], "database file unavailable"); n != 1 {
		t.Errorf("%d missing-file warnings, want 1", n)
	}
	if got := m.Lookup(ip); got.ASN != 64501 {
		t.Errorf("after the ASN file vanished: %+v", got)
	}
	if n := m.LookupErrors(); n != 0 {
		t.Errorf("%d lookup errors", n)
	}
}

func TestReloadUnchanged(t *testing.T) {
	m := openAll(t)
	if m.Reload() {
		t.Error("Reload swapped unchanged files")
	}
}

func TestClose(t *testing.T) {
	p := geotest.MustBuild(t)
	office := geo.Override{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Location: geo.Location{Known: true, Country: "GB", Lat: 51.5, Lon: 0}}
	m, err := geo.Open(geo.Config{CityDB: p.City, Overrides: []geo.Override{office}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		m.Watch(context.Background(), time.Hour)
		close(done)
	}()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := m.Lookup(netip.MustParseAddr("192.0.2.1")); got.Known {
		t.Errorf("database lookup after Close: %+v", got)
	}
	if got := m.Lookup(netip.MustParseAddr("10.1.1.1")); got.Country != "GB" || got.Source != "override" {
		t.Errorf("override after Close: %+v", got)
	}
	if m.Reload() {
		t.Error("Reload after Close")
	}
}

func TestDistanceKm(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want, tolerance        float64
	}{
		{"London–Sydney", 51.5074, -0.1278, -33.8688, 151.2093, 16990, 50},
		{"London–Paris", 51.5074, -0.1278, 48.8566, 2.3522, 344, 5},
		{"New York–San Francisco", 40.7128, -74.006, 37.7749, -122.4194, 4130, 20},
		{"same point", 51.5074, -0.1278, 51.5074, -0.1278, 0, 0},
		{"antipodes", 0, 0, 0, 180, math.Pi * 6371, 0.001},
		{"across the date line", 0, 179.5, 0, -179.5, 111.2, 0.1},
		{"pole to pole", 90, 0, -90, 0, math.Pi * 6371, 0.001},
	}
	for _, tt := range tests {
		got := geo.DistanceKm(tt.lat1, tt.lon1, tt.lat2, tt.lon2)
		if math.Abs(got-tt.want) > tt.tolerance {
			t.Errorf("%s: %.1f km, want %.1f ± %g", tt.name, got, tt.want, tt.tolerance)
		}
		if back := geo.DistanceKm(tt.lat2, tt.lon2, tt.lat1, tt.lon1); math.Abs(back-got) > 1e-9 {
			t.Errorf("%s: not symmetric: %f vs %f", tt.name, got, back)
		}
	}
}

func TestInternal(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.0.0.1", true},
		{"172.16.5.4", true},
		{"172.32.0.1", false},
		{"192.168.0.1", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"169.254.169.254", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"224.0.0.251", true},
		{"239.1.1.1", true},
		{"ff05::2", true},
		{"0.0.0.0", true},
		{"::", true},
		{"100.64.0.0", true},
		{"100.127.255.255", true},
		{"100.128.0.0", false},
		{"100.63.255.255", false},
		{"fc00::1", true},
		{"fd00::1", true},
		{"::ffff:10.0.0.1", true},
		{"::ffff:192.168.1.1", true},
		{"::ffff:8.8.8.8", false},
		{"8.8.8.8", false},
		{"81.2.69.142", false},
		{"192.0.2.1", false}, // documentation, but public as far as Internal is concerned
		{"2001:db8::1", false},
		{"2606:4700::1111", false},
	}
	for _, tt := range tests {
		if got := geo.Internal(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Internal(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if !geo.Internal(netip.Addr{}) {
		t.Error("Internal(invalid) = false")
	}
}

// BenchmarkLookup measures Lookup: "hit" repeats a few addresses (session
// events come from few addresses), "nocache" disables the cache to show
// what the databases cost through geoip2, "miss" spreads over a million
// addresses (most miss the default cache).
func BenchmarkLookup(b *testing.B) {
	overrides := []geo.Override{
		{Prefix: netip.MustParsePrefix("10.20.0.0/16"), Location: geo.Location{Known: true, Country: "GB", Lat: 51.5, Lon: -0.12}},
		{Prefix: netip.MustParsePrefix("10.20.5.0/24"), Location: geo.Location{Known: true, Country: "FR", Lat: 48.85, Lon: 2.35}},
	}
	p := geotest.MustBuild(b)
	all := geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous, Overrides: overrides}
	full := openTest(b, all)
	cityOnly := openTest(b, geo.Config{CityDB: p.City})
	all.CacheSize = -1
	fullNoCache := openTest(b, all)
	cityOnlyNoCache := openTest(b, geo.Config{CityDB: p.City, CacheSize: -1})

	public := []netip.Addr{
		netip.MustParseAddr("81.2.69.142"),
		netip.MustParseAddr("192.0.2.100"),
		netip.MustParseAddr("198.51.100.200"),
		netip.MustParseAddr("203.0.113.230"),
		netip.MustParseAddr("2001:db8:1::1"),
		netip.MustParseAddr("8.8.8.8"),
	}
	// A million distinct addresses, alternating between the London and
	// the VPN IPv6 ranges (2001:db8:1::/48, 2001:db8:3::/48).
	many := make([]netip.Addr, 1<<20)
	for i := range many {
		x := uint32(i)
		many[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(1 + 2*(i%2)), 0, 0, 0, 0, 0, 0, byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	run := func(name string, m *geo.MaxMind, ips []netip.Addr) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = m.Lookup(ips[i%len(ips)])
				i++
			}
		})
	}
	run("hit/all-dbs", full, public)
	run("hit/city-only", cityOnly, public)
	b.Run("hit/all-dbs-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				_ = full.Lookup(public[i%len(public)])
				i++
			}
		})
	})
	run("nocache/all-dbs", fullNoCache, public)
	run("nocache/city-only", cityOnlyNoCache, public)
	run("miss/all-dbs", full, many)
	run("override", full, []netip.Addr{netip.MustParseAddr("10.20.1.1"), netip.MustParseAddr("10.20.5.1")})
	run("internal", full, []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("::1")})
}

func TestBuildErrors(t *testing.T) {
	const header = "network,country,city,lat,lon,accuracy_km,asn,as_org,anonymous\n"
	tests := []struct{ name, csv, want string }{
		{"header", "network,country\n", `header is "network,country", want "network,country,city,lat,lon,accuracy_km,asn,as_org,anonymous"`},
		{"bad network", header + "192.0.2.0/33,GB,,,,,,,\n", `:2: network: netip.ParsePrefix("192.0.2.0/33"): prefix length out of range`},
		{"host bits", header + "192.0.2.1/24,GB,,,,,,,\n", ":2: network 192.0.2.1/24 has host bits set (want 192.0.2.0/24)"},
		{"duplicate", header + "192.0.2.0/24,GB,,,,,,,\n192.0.2.0/24,FR,,,,,,,\n", ":3: network 192.0.2.0/24: duplicate of line 2"},
		{"country", header + "192.0.2.0/24,gb,,,,,,,\n", `:2: country "gb": want two upper-case letters`},
		{"lat without lon", header + "192.0.2.0/24,GB,,51,,,,,\n", ":2: lat and lon: give both or neither"},
		{"lat out of range", header + "192.0.2.0/24,GB,,91,0,,,,\n", `:2: lat "91": want a number in [-90, 90]`},
		{"accuracy", header + "192.0.2.0/24,GB,,1,1,-5,,,\n", `:2: accuracy_km "-5": want a whole number of km up to 65535`},
		{"asn", header + "192.0.2.0/24,,,,,,x,,\n", `:2: asn "x": want a 32-bit number`},
		{"anonymous", header + "192.0.2.0/24,,,,,,,,maybe\n", `:2: anonymous "maybe": want empty, vpn, hosting, tor, proxy or residential`},
		{"columns", header + "192.0.2.0/24,GB\n", "wrong number of fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "n.csv")
			if err := os.WriteFile(path, []byte(tt.csv), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := geotest.Build(path, dir)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build: %v, want an error naming %s and saying %s", err, path, tt.want)
			}
		})
	}
}
