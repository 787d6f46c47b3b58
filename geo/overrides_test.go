package geo_test

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sessionmon/sessionmon/geo"
)

const exampleOverrides = `
overrides:
  - cidr: 10.20.0.0/16
    country: GB
    city: London office
    lat: 51.5
    lon: -0.12
    accuracy_km: 5
  - cidr: 100.64.0.0/10
    anonymous: true        # e.g. our VPN egress: not travel
  - cidr: 10.20.5.0/24     # a floor of the London office, moved to Paris
    country: fr
    lat: 48.8566
    lon: 2.3522
  - cidr: fd00:1::/32
    country: DE
    lat: 50
    lon: 8
    anonymous: true
`

func TestParseOverrides(t *testing.T) {
	got, err := geo.ParseOverrides("overrides.yaml", strings.NewReader(exampleOverrides))
	if err != nil {
		t.Fatal(err)
	}
	want := []geo.Override{
		{netip.MustParsePrefix("10.20.0.0/16"), geo.Location{Known: true, Country: "GB", City: "London office", Lat: 51.5, Lon: -0.12, AccuracyKm: 5, Source: "override"}},
		{netip.MustParsePrefix("100.64.0.0/10"), geo.Location{Anonymous: true, Source: "override"}},
		{netip.MustParsePrefix("10.20.5.0/24"), geo.Location{Known: true, Country: "FR", Lat: 48.8566, Lon: 2.3522, Source: "override"}},
		{netip.MustParsePrefix("fd00:1::/32"), geo.Location{Known: true, Country: "DE", Lat: 50, Lon: 8, Anonymous: true, Source: "override"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseOverridesEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing yet\n", "overrides:\n", "overrides: []\n", "---\n"} {
		got, err := geo.ParseOverrides("o.yaml", strings.NewReader(in))
		if err != nil || len(got) != 0 {
			t.Errorf("ParseOverrides(%q) = %v, %v; want none, nil", in, got, err)
		}
	}
}

func TestParseOverridesErrors(t *testing.T) {
	const loc = "    country: GB\n    lat: 51.5\n    lon: -0.12\n"
	tests := []struct {
		name, in, want string
	}{
		{"bad CIDR", "overrides:\n  - cidr: 10.20.0.0/33\n" + loc,
			`o.yaml:2: overrides[0]: cidr: "10.20.0.0/33" is not a CIDR prefix`},
		{"not a CIDR", "overrides:\n  - cidr: london\n" + loc,
			`o.yaml:2: overrides[0]: cidr: "london" is not a CIDR prefix`},
		{"bare address", "overrides:\n  - cidr: 10.20.0.1\n" + loc,
			`o.yaml:2: overrides[0]: cidr: "10.20.0.1" is not a CIDR prefix`},
		{"host bits", "overrides:\n  - cidr: 10.20.1.0/16\n" + loc,
			`o.yaml:2: overrides[0]: cidr: 10.20.1.0/16 has host bits set (did you mean 10.20.0.0/16?)`},
		{"IPv4-mapped", "overrides:\n  - cidr: ::ffff:10.0.0.0/104\n" + loc,
			`o.yaml:2: overrides[0]: cidr: ::ffff:10.0.0.0/104 is IPv4-mapped IPv6: write it as IPv4`},
		{"missing CIDR", "overrides:\n  - country: GB\n    lat: 1\n    lon: 1\n",
			`o.yaml:2: overrides[0]: cidr: missing`},
		{"lat out of range", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat: 95\n    lon: 0\n",
			`o.yaml:2: overrides[0]: lat: 95 is out of range [-90, 90]`},
		{"lon out of range", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat: 0\n    lon: -180.5\n",
			`o.yaml:2: overrides[0]: lon: -180.5 is out of range [-180, 180]`},
		{"lat NaN", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat: .nan\n    lon: 0\n",
			`o.yaml:2: overrides[0]: lat: want a finite number, got ".nan"`},
		{"lat text", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat: north\n    lon: 0\n",
			`o.yaml:2: overrides[0]: lat: want a number, got "north"`},
		{"lat quoted", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat: \"51.5\"\n    lon: 0\n",
			`o.yaml:2: overrides[0]: lat: want a number, got "51.5"`},
		{"lat null", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat:\n    lon: 0\n",
			`o.yaml:2: overrides[0]: lat: want a number, got null`},
		{"country three letters", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GBR\n    lat: 0\n    lon: 0\n",
			`o.yaml:2: overrides[0]: country: "GBR" is not a two-letter ISO 3166-1 code`},
		{"country one letter", "overrides:\n  - cidr: 10.0.0.0/8\n    country: G\n    lat: 0\n    lon: 0\n",
			`o.yaml:2: overrides[0]: country: "G" is not a two-letter ISO 3166-1 code`},
		{"country digits", "overrides:\n  - cidr: 10.0.0.0/8\n    country: 44\n    lat: 0\n    lon: 0\n",
			`o.yaml:2: overrides[0]: country: "44" is not a two-letter ISO 3166-1 code`},
		{"country non-ASCII", "overrides:\n  - cidr: 10.0.0.0/8\n    country: É\n    lat: 0\n    lon: 0\n",
			`o.yaml:2: overrides[0]: country: "É" is not a two-letter ISO 3166-1 code`},
		{"unknown field", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "    colour: blue\n",
			`o.yaml:2: overrides[0]: "colour": unknown field (want cidr, country, city, lat, lon, accuracy_km, anonymous)`},
		{"unknown top-level field", "override:\n  - cidr: 10.0.0.0/8\n",
			`o.yaml:1: unknown field "override" (want overrides)`},
		{"duplicate CIDR", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "  - cidr: 192.168.0.0/16\n" + loc + "  - cidr: 10.0.0.0/8\n    anonymous: true\n",
			`o.yaml:10: overrides[2]: cidr: duplicate 10.0.0.0/8 (first at line 2)`},
		{"duplicate field", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "    lat: 52\n",
			`o.yaml:2: overrides[0]: lat: given twice`},
		{"no location, not anonymous", "overrides:\n  - cidr: 10.0.0.0/8\n",
			`o.yaml:2: overrides[0]: sets neither a location (country, lat, lon) nor anonymous: true`},
		{"anonymous false only", "overrides:\n  - cidr: 10.0.0.0/8\n    anonymous: false\n",
			`o.yaml:2: overrides[0]: sets neither a location (country, lat, lon) nor anonymous: true`},
		{"country without coordinates", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n",
			`o.yaml:2: overrides[0]: lat: missing (a location needs country, lat and lon)`},
		{"lat without lon", "overrides:\n  - cidr: 10.0.0.0/8\n    country: GB\n    lat: 1\n",
			`o.yaml:2: overrides[0]: lon: missing (a location needs country, lat and lon)`},
		{"coordinates without country", "overrides:\n  - cidr: 10.0.0.0/8\n    lat: 1\n    lon: 1\n",
			`o.yaml:2: overrides[0]: country: missing (a location needs country, lat and lon)`},
		{"city alone", "overrides:\n  - cidr: 10.0.0.0/8\n    city: London\n    anonymous: true\n",
			`o.yaml:2: overrides[0]: country: missing (a location needs country, lat and lon)`},
		{"empty city", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "    city: \" \"\n",
			`o.yaml:2: overrides[0]: city: empty`},
		{"negative accuracy", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "    accuracy_km: -1\n",
			`o.yaml:2: overrides[0]: accuracy_km: -1 is out of range [0, 20000]`},
		{"huge accuracy", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "    accuracy_km: 1e6\n",
			`o.yaml:2: overrides[0]: accuracy_km: 1e+06 is out of range [0, 20000]`},
		{"anonymous not a bool", "overrides:\n  - cidr: 10.0.0.0/8\n    anonymous: yes\n",
			`o.yaml:2: overrides[0]: anonymous: want true or false, got "yes"`},
		{"cidr is a list", "overrides:\n  - cidr: [10.0.0.0/8]\n    anonymous: true\n",
			`o.yaml:2: overrides[0]: cidr: want a string, got list`},
		{"binary city", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "    city: !!binary aGVsbG8=\n",
			`o.yaml:2: overrides[0]: city: want a string, got !!binary "aGVsbG8="`},
		{"entry not a mapping", "overrides:\n  - 10.0.0.0/8\n",
			`o.yaml:2: overrides[0]: want a mapping with cidr, country, city, lat, lon, accuracy_km, anonymous, got "10.0.0.0/8"`},
		{"overrides not a list", "overrides:\n  cidr: 10.0.0.0/8\n",
			`o.yaml:2: overrides: want a list of entries`},
		{"top level a list", "- cidr: 10.0.0.0/8\n",
			`o.yaml:1: want a mapping with an overrides list`},
		{"overrides twice", "overrides: []\noverrides: []\n",
			`o.yaml:2: overrides: given twice (first at line 1)`},
		{"two documents", "overrides: []\n---\noverrides: []\n",
			`o.yaml: more than one YAML document`},
		{"YAML syntax", "overrides:\n  - cidr: [10.0.0.0/8\n",
			`o.yaml: yaml: line 1: did not find expected ',' or ']'`},
		{"tab indentation", "overrides:\n\t- cidr: 10.0.0.0/8\n",
			`o.yaml: yaml: line 2: found character that cannot start any token`},
		{"merge key", "base: &b\n  country: GB\noverrides:\n  - <<: *b\n    cidr: 10.0.0.0/8\n",
			`o.yaml:1: unknown field "base" (want overrides)`},
		{"later entry", "overrides:\n  - cidr: 10.0.0.0/8\n" + loc + "  - cidr: 10.1.0.0/16\n    country: GB\n    lat: -91\n    lon: 0\n",
			`o.yaml:6: overrides[1]: lat: -91 is out of range [-90, 90]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := geo.ParseOverrides("o.yaml", strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("accepted:\n%s\ngot %+v", tt.in, got)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

// yamlOverride re-encodes an Override in ParseOverrides' format.
type yamlOverride struct {
	CIDR       string   `yaml:"cidr"`
	Country    string   `yaml:"country,omitempty"`
	City       string   `yaml:"city,omitempty"`
	Lat        *float64 `yaml:"lat,omitempty"`
	Lon        *float64 `yaml:"lon,omitempty"`
	AccuracyKm float64  `yaml:"accuracy_km,omitempty"`
	Anonymous  bool     `yaml:"anonymous,omitempty"`
}

func encodeOverrides(t testing.TB, list []geo.Override) []byte {
	var doc struct {
		Overrides []yamlOverride `yaml:"overrides"`
	}
	for _, o := range list {
		y := yamlOverride{CIDR: o.Prefix.String(), Anonymous: o.Location.Anonymous}
		if o.Location.Known {
			lat, lon := o.Location.Lat, o.Location.Lon
			y.Country, y.City, y.Lat, y.Lon, y.AccuracyKm = o.Location.Country, o.Location.City, &lat, &lon, o.Location.AccuracyKm
		}
		doc.Overrides = append(doc.Overrides, y)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOverride checks what ParseOverrides promises of an accepted entry.
func checkOverride(t testing.TB, o geo.Override) {
	t.Helper()
	p := o.Prefix
	if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		t.Errorf("accepted prefix %v", p)
	}
	l := o.Location
	if l.Source != "override" {
		t.Errorf("%v: source %q", p, l.Source)
	}
	if !l.Known {
		if !l.Anonymous || l != (geo.Location{Anonymous: true, Source: "override"}) {
			t.Errorf("%v: unknown location with data: %+v", p, l)
		}
		return
	}
	if len(l.Country) != 2 || strings.ToUpper(l.Country) != l.Country || l.Country[0] < 'A' || l.Country[0] > 'Z' || l.Country[1] < 'A' || l.Country[1] > 'Z' {
		t.Errorf("%v: country %q", p, l.Country)
	}
	if !(l.Lat >= -90 && l.Lat <= 90 && l.Lon >= -180 && l.Lon <= 180 && l.AccuracyKm >= 0 && l.AccuracyKm <= geo.MaxAccuracyKm) {
		t.Errorf("%v: out of range: %+v", p, l)
	}
}

func TestParseOverridesRoundTrip(t *testing.T) {
	first, err := geo.ParseOverrides("a.yaml", strings.NewReader(exampleOverrides))
	if err != nil {
		t.Fatal(err)
	}
	enc := encodeOverrides(t, first)
	second, err := geo.ParseOverrides("b.yaml", strings.NewReader(string(enc)))
	if err != nil {
		t.Fatalf("%v\n%s", err, enc)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("round trip changed\n%+v\nto\n%+v", first, second)
	}
}

func FuzzParseOverrides(f *testing.F) {
	for _, seed := range []string{
		exampleOverrides,
		"",
		"overrides: []",
		"overrides:\n  - cidr: 10.0.0.0/8\n    anonymous: true\n",
		"overrides:\n  - cidr: 2001:db8::/32\n    country: nl\n    city: \"Amsterdam\\n\"\n    lat: -0.0\n    lon: 180\n    accuracy_km: 20000\n",
		"overrides:\n  - cidr: 0.0.0.0/0\n    country: ZZ\n    lat: 1e-300\n    lon: 0x10\n",
		"overrides:\n  - &a {cidr: 10.0.0.0/8, anonymous: true}\n  - *a\n",
		"overrides:\n  - cidr: 10.0.0.0/8\n    city: !!binary aGVsbG8=\n",
		"a: &a [*a]",
		"overrides:\n  - {cidr: 10.0.0.0/8, country: GB, lat: 1, lon: 2, lat: 3}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := geo.ParseOverrides("fuzz.yaml", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		seen := map[netip.Prefix]bool{}
		for _, o := range got {
			checkOverride(t, o)
			if seen[o.Prefix] {
				t.Errorf("duplicate %v accepted", o.Prefix)
			}
			seen[o.Prefix] = true
		}
		// What was accepted must be accepted again, unchanged, when
		// written back out.
		enc := encodeOverrides(t, got)
		again, err := geo.ParseOverrides("again.yaml", strings.NewReader(string(enc)))
		if err != nil {
			t.Fatalf("re-encoded input rejected: %v\ninput:\n%s\nre-encoded:\n%s", err, in, enc)
		}
		if len(got) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("round trip changed\n%+v\nto\n%+v", got, again)
		}
		// And the result must be usable as Config.Overrides.
		if _, err := geo.Open(geo.Config{CityDB: "/nonexistent", Overrides: got}); err == nil || !strings.Contains(err.Error(), "/nonexistent") {
			t.Fatalf("overrides rejected by Open: %v", err)
		}
	})
}
