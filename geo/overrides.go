package geo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Override places a network by hand, ahead of any database: an office's
// (often private) address space, a VPN egress range.
type Override struct {
	Prefix   netip.Prefix
	Location Location
}

// MaxAccuracyKm is the largest accuracy radius an override may give: half
// the Earth's circumference, beyond which a radius says nothing.
const MaxAccuracyKm = 20000

// overrideFields are the keys an overrides entry may have, in the order
// errors list them.
var overrideFields = []string{"cidr", "country", "city", "lat", "lon", "accuracy_km", "anonymous"}

// ParseOverrides reads overrides from YAML of this shape:
//
//	overrides:
//	  - cidr: 10.20.0.0/16      # required; no host bits; IPv4 or IPv6
//	    country: GB             # ISO 3166-1 alpha-2 (upper-cased)
//	    city: London office     # optional
//	    lat: 51.5               # [-90, 90]
//	    lon: -0.12              # [-180, 180]
//	    accuracy_km: 5          # optional, [0, 20000], default 0
//	    anonymous: true         # optional, default false
//
// An entry either gives a location — country, lat and lon together, with
// city and accuracy_km optional — or sets only anonymous: true:
//
//   - With a location, the address is Known (Source "override"), even in
//     private or CGNAT space, which no database can place: offices use
//     private space. anonymous may be added to mark, say, a VPN egress
//     with a fixed location.
//   - With only anonymous: true (e.g. our own VPN egress), the address is
//     Anonymous but not Known: it has no location to assert, so it never
//     takes part in geographic rules ("not travel").
//
// Either way an override is authoritative for its range: the databases
// are not consulted for it (no ASN, no database anonymity flags). Where
// overrides nest, the longest prefix wins. An entry with neither a
// location nor anonymous: true is an error, as is anything else
// questionable: unknown fields, a field given twice, a CIDR with host bits
// set or given twice, values out of range. An empty document or an empty
// list gives no overrides. name is used in errors, which read
//
//	name:LINE: overrides[I]: FIELD: reason
//
// where LINE is the line of the entry (its "- ").
func ParseOverrides(name string, r io.Reader) ([]Override, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty document
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document", name)
	}
	out, err := walkOverrides(name, &doc)
	if err != nil {
		return nil, err
	}

	// The walk above checks every key and value with precise messages; a
	// strict decode into the schema's types must agree with it.
	var typed struct {
		Overrides []struct {
			CIDR       string   `yaml:"cidr"`
			Country    *string  `yaml:"country"`
			City       *string  `yaml:"city"`
			Lat        *float64 `yaml:"lat"`
			Lon        *float64 `yaml:"lon"`
			AccuracyKm *float64 `yaml:"accuracy_km"`
			Anonymous  *bool    `yaml:"anonymous"`
		} `yaml:"overrides"`
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&typed); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(typed.Overrides) != len(out) {
		return nil, fmt.Errorf("%s: %d entries read as %d", name, len(typed.Overrides), len(out))
	}
	return out, nil
}

func walkOverrides(name string, doc *yaml.Node) ([]Override, error) {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping with an overrides list", name, root.Line)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "overrides" {
			return nil, fmt.Errorf("%s:%d: unknown field %s (want overrides)", name, k.Line, keyName(k))
		}
		if list != nil {
			return nil, fmt.Errorf("%s:%d: overrides: given twice (first at line %d)", name, k.Line, list.Line)
		}
		list = v
	}
	if list == nil || (list.Kind == yaml.ScalarNode && list.Tag == "!!null") {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: overrides: want a list of entries", name, list.Line)
	}
	out := make([]Override, 0, len(list.Content))
	firstLine := map[netip.Prefix]int{}
	for i, item := range list.Content {
		o, err := parseEntry(item)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: overrides[%d]: %w", name, item.Line, i, err)
		}
		if first, dup := firstLine[o.Prefix]; dup {
			return nil, fmt.Errorf("%s:%d: overrides[%d]: cidr: duplicate %s (first at line %d)", name, item.Line, i, o.Prefix, first)
		}
		firstLine[o.Prefix] = item.Line
		out = append(out, o)
	}
	return out, nil
}

func keyName(k *yaml.Node) string {
	if k.Kind == yaml.ScalarNode {
		return strconv.Quote(k.Value)
	}
	return "of kind " + kindName(k)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "document"
}

// parseEntry reads one overrides entry. Its errors start with the field.
func parseEntry(item *yaml.Node) (Override, error) {
	if item.Kind == yaml.AliasNode && item.Alias != nil {
		item = item.Alias
	}
	if item.Kind != yaml.MappingNode {
		return Override{}, fmt.Errorf("want a mapping with %s, got %s", strings.Join(overrideFields, ", "), kindName(item))
	}
	var (
		cidr, country, city *string
		lat, lon, accuracy  *float64
		anonymous           *bool
		seen                = map[string]bool{}
	)
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, v := item.Content[j], item.Content[j+1]
		if k.Kind != yaml.ScalarNode {
			return Override{}, fmt.Errorf("unknown field %s (want %s)", keyName(k), strings.Join(overrideFields, ", "))
		}
		field := k.Value
		if seen[field] {
			return Override{}, fmt.Errorf("%s: given twice", field)
		}
		seen[field] = true
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		var err error
		switch field {
		case "cidr":
			cidr, err = scalarString(v)
		case "country":
			country, err = scalarString(v)
		case "city":
			city, err = scalarString(v)
		case "lat":
			lat, err = scalarFloat(v)
		case "lon":
			lon, err = scalarFloat(v)
		case "accuracy_km":
			accuracy, err = scalarFloat(v)
		case "anonymous":
			anonymous, err = scalarBool(v)
		default:
			return Override{}, fmt.Errorf("%s: unknown field (want %s)", strconv.Quote(field), strings.Join(overrideFields, ", "))
		}
		if err != nil {
			return Override{}, fmt.Errorf("%s: %w", field, err)
		}
	}

	var o Override
	if cidr == nil {
		return o, errors.New("cidr: missing")
	}
	p, err := netip.ParsePrefix(*cidr)
	if err != nil {
		return o, fmt.Errorf("cidr: %q is not a CIDR prefix", *cidr)
	}
	if err := checkPrefix(p); err != nil {
		return o, fmt.Errorf("cidr: %w", err)
	}
	o.Prefix = p
	o.Location.Source = "override"
	if anonymous != nil {
		o.Location.Anonymous = *anonymous
	}

	hasLocation := country != nil || lat != nil || lon != nil || city != nil || accuracy != nil
	if !hasLocation {
		if !o.Location.Anonymous {
			return o, errors.New("sets neither a location (country, lat, lon) nor anonymous: true")
		}
		return o, nil
	}
	for _, req := range []struct {
		name string
		set  bool
	}{{"country", country != nil}, {"lat", lat != nil}, {"lon", lon != nil}} {
		if !req.set {
			return o, fmt.Errorf("%s: missing (a location needs country, lat and lon)", req.name)
		}
	}
	c := strings.ToUpper(*country)
	if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
		return o, fmt.Errorf("country: %q is not a two-letter ISO 3166-1 code", *country)
	}
	if !(*lat >= -90 && *lat <= 90) {
		return o, fmt.Errorf("lat: %s is out of range [-90, 90]", fmtFloat(*lat))
	}
	if !(*lon >= -180 && *lon <= 180) {
		return o, fmt.Errorf("lon: %s is out of range [-180, 180]", fmtFloat(*lon))
	}
	o.Location.Known = true
	o.Location.Country = c
	o.Location.Lat = *lat
	o.Location.Lon = *lon
	if city != nil {
		if strings.TrimSpace(*city) == "" {
			return o, errors.New("city: empty")
		}
		o.Location.City = *city
	}
	if accuracy != nil {
		if !(*accuracy >= 0 && *accuracy <= MaxAccuracyKm) {
			return o, fmt.Errorf("accuracy_km: %s is out of range [0, %d]", fmtFloat(*accuracy), MaxAccuracyKm)
		}
		o.Location.AccuracyKm = *accuracy
	}
	return o, nil
}

// checkPrefix is what an override's prefix must satisfy, whether parsed
// or given to Open directly.
func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("invalid prefix")
	case p.Addr().Zone() != "":
		return fmt.Errorf("%s has a zone", p)
	case p.Addr().Is4In6():
		return fmt.Errorf("%s is IPv4-mapped IPv6: write it as IPv4", p)
	case p != p.Masked():
		return fmt.Errorf("%s has host bits set (did you mean %s?)", p, p.Masked())
	}
	return nil
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func scalarString(v *yaml.Node) (*string, error) {
	if v.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("want a string, got %s", kindName(v))
	}
	switch v.Tag {
	case "!!str", "!!int", "!!float": // a plain 2024 is text here
	case "!!null":
		return nil, errors.New("want a string, got null")
	default:
		return nil, fmt.Errorf("want a string, got %s %s", v.Tag, kindName(v))
	}
	s := v.Value
	return &s, nil
}

func scalarFloat(v *yaml.Node) (*float64, error) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") {
		return nil, fmt.Errorf("want a number, got %s", kindName(v))
	}
	var f float64
	if err := v.Decode(&f); err != nil {
		return nil, fmt.Errorf("want a number, got %s", kindName(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("want a finite number, got %s", kindName(v))
	}
	return &f, nil
}

func scalarBool(v *yaml.Node) (*bool, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		return nil, fmt.Errorf("want true or false, got %s", kindName(v))
	}
	var b bool
	if err := v.Decode(&b); err != nil {
		return nil, fmt.Errorf("want true or false, got %s", kindName(v))
	}
	return &b, nil
}

// overrideTable answers longest-prefix-match queries: one map per prefix
// length in use, longest first, keyed by the masked address as two
// integers (cheaper to hash than a netip.Prefix). Lookups do not allocate.
type overrideTable struct {
	v4, v6 []overrideLevel
	// span4 and span6 bound the addresses any override covers: most
	// lookups fall outside and skip the maps.
	span4, span6 [2]addrKey
}

type overrideLevel struct {
	bits   int
	mask   addrKey // bits, counted in the 16-byte form of the address
	prefix map[addrKey]Location
}

type addrKey struct{ hi, lo uint64 }

func keyOf(ip netip.Addr) addrKey {
	a := ip.As16()
	return addrKey{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

func maskOf(bits int) addrKey {
	var m addrKey
	switch {
	case bits >= 128:
		m = addrKey{^uint64(0), ^uint64(0)}
	case bits > 64:
		m = addrKey{^uint64(0), ^uint64(0) << (128 - bits)}
	case bits > 0:
		m = addrKey{^uint64(0) << (64 - bits), 0}
	}
	return m
}

func (k addrKey) and(m addrKey) addrKey { return addrKey{k.hi & m.hi, k.lo & m.lo} }

func (k addrKey) less(o addrKey) bool { return k.hi < o.hi || k.hi == o.hi && k.lo < o.lo }

func newOverrideTable(list []Override) (*overrideTable, error) {
	t := &overrideTable{}
	seen := map[netip.Prefix]bool{}
	for i, o := range list {
		if err := checkPrefix(o.Prefix); err != nil {
			return nil, fmt.Errorf("geo: override %d: %w", i, err)
		}
		if seen[o.Prefix] {
			return nil, fmt.Errorf("geo: override %d: duplicate %s", i, o.Prefix)
		}
		seen[o.Prefix] = true
		levels, span, bits := &t.v6, &t.span6, o.Prefix.Bits()
		if o.Prefix.Addr().Is4() {
			levels, span, bits = &t.v4, &t.span4, bits+96 // in the ::ffff:a.b.c.d form
		}
		first := keyOf(o.Prefix.Addr())
		mask := maskOf(bits)
		last := addrKey{first.hi | ^mask.hi, first.lo | ^mask.lo}
		if len(*levels) == 0 || first.less(span[0]) {
			span[0] = first
		}
		if len(*levels) == 0 || span[1].less(last) {
			span[1] = last
		}
		loc := o.Location
		loc.Source = "override"
		var lvl *overrideLevel
		for k := range *levels {
			if (*levels)[k].bits == bits {
				lvl = &(*levels)[k]
			}
		}
		if lvl == nil {
			*levels = append(*levels, overrideLevel{bits: bits, mask: maskOf(bits), prefix: map[addrKey]Location{}})
			lvl = &(*levels)[len(*levels)-1]
		}
		lvl.prefix[keyOf(o.Prefix.Addr()).and(lvl.mask)] = loc
	}
	for _, levels := range [][]overrideLevel{t.v4, t.v6} {
		sort.Slice(levels, func(a, b int) bool { return levels[a].bits > levels[b].bits })
	}
	return t, nil
}

// lookup finds the longest override prefix containing ip, which must be
// unmapped.
func (t *overrideTable) lookup(ip netip.Addr) (Location, bool) {
	levels, span := t.v6, &t.span6
	if ip.Is4() {
		levels, span = t.v4, &t.span4
	}
	if len(levels) == 0 {
		return Location{}, false
	}
	k := keyOf(ip)
	if k.less(span[0]) || span[1].less(k) {
		return Location{}, false
	}
	for i := range levels {
		if loc, ok := levels[i].prefix[k.and(levels[i].mask)]; ok {
			return loc, true
		}
	}
	return Location{}, false
}
