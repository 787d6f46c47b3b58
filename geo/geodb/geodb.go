// Package geodb builds small MaxMind-format databases (City, ASN and
// Anonymous IP) from a CSV of networks, so that tests and the one-process
// demo run package geo against real .mmdb files without downloading any.
// networks.csv, embedded as Networks, is the project's own: made-up
// places in documentation ranges (see README.md next to it).
//
// The CSV has the header
//
//	network,country,city,lat,lon,accuracy_km,asn,as_org,anonymous
//
// one network per row (IPv4 or IPv6 CIDR, no host bits set). Every column
// but network may be empty:
//
//   - country, city, lat, lon, accuracy_km go to the City database
//     (a row with none of them has no City record); lat and lon come
//     together;
//   - asn, as_org go to the ASN database;
//   - anonymous is empty or one of vpn, hosting, tor, proxy, residential
//     and goes to the Anonymous IP database.
//
// Lines starting with # are comments. The records use the field names and
// types of MaxMind's own databases, which is what
// github.com/oschwald/geoip2-golang/v2 decodes.
package geodb

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Database types written into the metadata, as MaxMind names them.
const (
	CityType      = "GeoIP2-City"
	ASNType       = "GeoLite2-ASN"
	AnonymousType = "GeoIP2-Anonymous-IP"
)

// File names Build writes in its directory.
const (
	CityFile      = "GeoIP2-City.mmdb"
	ASNFile       = "GeoLite2-ASN.mmdb"
	AnonymousFile = "GeoIP2-Anonymous-IP.mmdb"
)

// Paths are the files Build wrote.
type Paths struct {
	City      string // GeoIP2-City
	ASN       string // GeoLite2-ASN
	Anonymous string // GeoIP2-Anonymous-IP
}

// Header is the CSV header Build expects.
var Header = []string{"network", "country", "city", "lat", "lon", "accuracy_km", "asn", "as_org", "anonymous"}

// anonymousFlags maps the CSV's anonymous column to the Anonymous IP
// database's flags. is_anonymous is set whenever any other flag is, as in
// MaxMind's data.
var anonymousFlags = map[string][]string{
	"vpn":         {"is_anonymous_vpn"},
	"hosting":     {"is_hosting_provider"},
	"tor":         {"is_tor_exit_node"},
	"proxy":       {"is_public_proxy"},
	"residential": {"is_residential_proxy"},
}

// Build reads the CSV at csvPath and writes the three databases into dir
// (created if missing), replacing files of the same names. Errors name the
// CSV file and line.
func Build(csvPath, dir string) (Paths, error) {
	f, err := os.Open(csvPath)
	if err != nil {
		return Paths{}, fmt.Errorf("geodb: %w", err)
	}
	defer f.Close()
	return BuildFrom(csvPath, f, dir)
}

// Networks is the project's CSV of networks (networks.csv): documentation
// ranges placed in made-up cities, for tests and the demo.
//
//go:embed networks.csv
var Networks []byte

// BuildDemo writes the databases of Networks into dir.
func BuildDemo(dir string) (Paths, error) {
	return BuildFrom("networks.csv", bytes.NewReader(Networks), dir)
}

// BuildFrom is Build reading the CSV from f; csvPath names it in errors.
func BuildFrom(csvPath string, f io.Reader, dir string) (Paths, error) {

	newTree := func(dbType, desc string) (*mmdbwriter.Tree, error) {
		return mmdbwriter.New(mmdbwriter.Options{
			DatabaseType: dbType,
			Description:  map[string]string{"en": desc + " built by geodb from " + filepath.Base(csvPath)},
			Languages:    []string{"en"},
			IPVersion:    6,
			RecordSize:   28,
			// The test data lives mostly in documentation ranges
			// (192.0.2.0/24, 2001:db8::/32...), which mmdbwriter refuses
			// unless told otherwise.
			IncludeReservedNetworks: true,
			// IPv4 aliasing stays on (the default): IPv4 networks are
			// stored under ::/96 and ::ffff:0:0/96, 2002::/16 (6to4) and
			// 2001::/32 (Teredo) point there, as in MaxMind's databases.
		})
	}
	city, err := newTree(CityType, "Test City database")
	if err != nil {
		return Paths{}, fmt.Errorf("geodb: %w", err)
	}
	asn, err := newTree(ASNType, "Test ASN database")
	if err != nil {
		return Paths{}, fmt.Errorf("geodb: %w", err)
	}
	anon, err := newTree(AnonymousType, "Test Anonymous IP database")
	if err != nil {
		return Paths{}, fmt.Errorf("geodb: %w", err)
	}

	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = -1 // the header is checked below, the rows after it
	header, err := r.Read()
	if err != nil {
		return Paths{}, fmt.Errorf("geodb: %s: reading header: %w", csvPath, err)
	}
	if strings.Join(header, ",") != strings.Join(Header, ",") {
		return Paths{}, fmt.Errorf("geodb: %s: header is %q, want %q", csvPath, strings.Join(header, ","), strings.Join(Header, ","))
	}
	r.FieldsPerRecord = len(Header)
	seen := map[netip.Prefix]int{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Paths{}, fmt.Errorf("geodb: %s: %w", csvPath, err)
		}
		line, _ := r.FieldPos(0)
		row, err := parseRow(rec)
		if err != nil {
			return Paths{}, fmt.Errorf("geodb: %s:%d: %w", csvPath, line, err)
		}
		if first, dup := seen[row.network]; dup {
			return Paths{}, fmt.Errorf("geodb: %s:%d: network %s: duplicate of line %d", csvPath, line, row.network, first)
		}
		seen[row.network] = line
		ipnet := &net.IPNet{
			IP:   net.IP(row.network.Addr().AsSlice()),
			Mask: net.CIDRMask(row.network.Bits(), row.network.Addr().BitLen()),
		}
		for _, ins := range []struct {
			tree *mmdbwriter.Tree
			rec  mmdbtype.Map
		}{{city, row.city}, {asn, row.asn}, {anon, row.anon}} {
			if len(ins.rec) == 0 {
				continue
			}
			if err := ins.tree.Insert(ipnet, ins.rec); err != nil {
				return Paths{}, fmt.Errorf("geodb: %s:%d: network %s: %w", csvPath, line, row.network, err)
			}
		}
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Paths{}, fmt.Errorf("geodb: %w", err)
	}
	p := Paths{
		City:      filepath.Join(dir, CityFile),
		ASN:       filepath.Join(dir, ASNFile),
		Anonymous: filepath.Join(dir, AnonymousFile),
	}
	for _, w := range []struct {
		tree *mmdbwriter.Tree
		path string
	}{{city, p.City}, {asn, p.ASN}, {anon, p.Anonymous}} {
		if err := writeTree(w.tree, w.path); err != nil {
			return Paths{}, fmt.Errorf("geodb: %w", err)
		}
	}
	return p, nil
}

// writeTree writes the tree to a temporary file next to path and renames
// it into place, so a reader polling path never sees a half-written file.
func writeTree(t *mmdbwriter.Tree, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := t.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

type row struct {
	network         netip.Prefix
	city, asn, anon mmdbtype.Map
}

func parseRow(rec []string) (row, error) {
	col := func(name string) string {
		for i, h := range Header {
			if h == name {
				return strings.TrimSpace(rec[i])
			}
		}
		panic("geodb: no column " + name)
	}
	var out row
	network, err := netip.ParsePrefix(col("network"))
	if err != nil {
		return out, fmt.Errorf("network: %w", err)
	}
	if network != network.Masked() {
		return out, fmt.Errorf("network %s has host bits set (want %s)", network, network.Masked())
	}
	if network.Addr().Is4In6() {
		return out, fmt.Errorf("network %s: write IPv4 networks as IPv4", network)
	}
	out.network = network

	out.city = mmdbtype.Map{}
	if c := col("country"); c != "" {
		if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
			return out, fmt.Errorf("country %q: want two upper-case letters", c)
		}
		out.city["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(c)}
	}
	if c := col("city"); c != "" {
		out.city["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(c)}}
	}
	loc := mmdbtype.Map{}
	lat, lon := col("lat"), col("lon")
	if (lat == "") != (lon == "") {
		return out, errors.New("lat and lon: give both or neither")
	}
	if lat != "" {
		la, err := parseFloat("lat", lat, 90)
		if err != nil {
			return out, err
		}
		lo, err := parseFloat("lon", lon, 180)
		if err != nil {
			return out, err
		}
		loc["latitude"] = mmdbtype.Float64(la)
		loc["longitude"] = mmdbtype.Float64(lo)
	}
	if a := col("accuracy_km"); a != "" {
		n, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			return out, fmt.Errorf("accuracy_km %q: want a whole number of km up to 65535", a)
		}
		loc["accuracy_radius"] = mmdbtype.Uint16(n)
	}
	if len(loc) > 0 {
		out.city["location"] = loc
	}

	out.asn = mmdbtype.Map{}
	if a := col("asn"); a != "" {
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(a), "AS"), 10, 32)
		if err != nil {
			return out, fmt.Errorf("asn %q: want a 32-bit number", a)
		}
		out.asn["autonomous_system_number"] = mmdbtype.Uint32(n)
	}
	if o := col("as_org"); o != "" {
		out.asn["autonomous_system_organization"] = mmdbtype.String(o)
	}

	out.anon = mmdbtype.Map{}
	if a := col("anonymous"); a != "" {
		flags, ok := anonymousFlags[a]
		if !ok {
			return out, fmt.Errorf("anonymous %q: want empty, vpn, hosting, tor, proxy or residential", a)
		}
		out.anon["is_anonymous"] = mmdbtype.Bool(true)
		for _, f := range flags {
			out.anon[mmdbtype.String(f)] = mmdbtype.Bool(true)
		}
	}
	return out, nil
}

func parseFloat(name, s string, limit float64) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v < -limit || v > limit {
		return 0, fmt.Errorf("%s %q: want a number in [-%g, %g]", name, s, limit, limit)
	}
	return v, nil
}
