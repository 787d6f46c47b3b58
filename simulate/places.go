package simulate

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/sessionmon/sessionmon/geo"
)

// Place is a place the simulated traffic comes from: one network of the
// project's GeoIP test data, networks.csv (geotest.CSVPath), from which
// the demo's detector builds its databases.
type Place struct {
	// Name is the city, or for a network placed only at country level
	// what it is (a Tor exit relay).
	Name string
	// Country is the ISO 3166-1 alpha-2 code.
	Country string
	// Network is a network of networks.csv (the whole row's network).
	Network netip.Prefix
	// Anonymous is true for a VPN, hosting provider or Tor exit: the
	// detector never takes such an address as evidence of travel.
	Anonymous bool
	// Home is true where normal users live. Attackers come from the other
	// places, and from addresses of home networks that no user has.
	Home bool
}

// String is "Name, Country".
func (p Place) String() string {
	if p.Country == "" {
		return p.Name
	}
	return p.Name + ", " + p.Country
}

// place is a Place with what the simulator needs to pick between places.
type place struct {
	Place
	lat, lon, accKm float64
	// weight is the share of normal users living here (0: not a home).
	weight int
	// v6 marks an IPv6 network, where each user has a /64 of their own.
	v6 bool
}

// The places, as in networks.csv. Coordinates and accuracy radii are the
// CSV's, used only to pick far-away places for the attacks.
var places = []*place{
	// Homes of normal users, weighted. Two /24s are shared by several
	// /26 places (192.0.2.0/24: London, Manchester, Paris, Frankfurt;
	// 198.51.100.0/24: New York, San Francisco, Sydney; 203.0.113.0/24:
	// Tokyo, São Paulo, Singapore): the detector's shared-session rule
	// takes one /24 for one network, which attackers avoid.
	{Place: Place{Name: "London", Country: "GB", Network: netip.MustParsePrefix("81.2.69.0/24"), Home: true}, lat: 51.5074, lon: -0.1278, accKm: 20, weight: 6},
	{Place: Place{Name: "London", Country: "GB", Network: netip.MustParsePrefix("192.0.2.0/26"), Home: true}, lat: 51.5074, lon: -0.1278, accKm: 20, weight: 3},
	{Place: Place{Name: "Manchester", Country: "GB", Network: netip.MustParsePrefix("192.0.2.64/26"), Home: true}, lat: 53.4808, lon: -2.2426, accKm: 20, weight: 2},
	{Place: Place{Name: "Paris", Country: "FR", Network: netip.MustParsePrefix("192.0.2.128/26"), Home: true}, lat: 48.8566, lon: 2.3522, accKm: 10, weight: 3},
	{Place: Place{Name: "Frankfurt am Main", Country: "DE", Network: netip.MustParsePrefix("192.0.2.192/26"), Home: true}, lat: 50.1109, lon: 8.6821, accKm: 20, weight: 2},
	{Place: Place{Name: "New York", Country: "US", Network: netip.MustParsePrefix("198.51.100.0/26"), Home: true}, lat: 40.7128, lon: -74.006, accKm: 10, weight: 3},
	{Place: Place{Name: "San Francisco", Country: "US", Network: netip.MustParsePrefix("198.51.100.64/26"), Home: true}, lat: 37.7749, lon: -122.4194, accKm: 10, weight: 2},
	{Place: Place{Name: "Sydney", Country: "AU", Network: netip.MustParsePrefix("198.51.100.128/26"), Home: true}, lat: -33.8688, lon: 151.2093, accKm: 20, weight: 1},
	{Place: Place{Name: "Tokyo", Country: "JP", Network: netip.MustParsePrefix("203.0.113.0/26"), Home: true}, lat: 35.6762, lon: 139.6503, accKm: 20, weight: 1},
	{Place: Place{Name: "São Paulo", Country: "BR", Network: netip.MustParsePrefix("203.0.113.64/26"), Home: true}, lat: -23.5505, lon: -46.6333, accKm: 50, weight: 1},
	{Place: Place{Name: "Singapore", Country: "SG", Network: netip.MustParsePrefix("203.0.113.128/26"), Home: true}, lat: 1.3521, lon: 103.8198, accKm: 10, weight: 1},
	// IPv6 homes: mobile and fibre users with a /64 each. They also take
	// the users that no longer fit in the IPv4 networks.
	{Place: Place{Name: "London", Country: "GB", Network: netip.MustParsePrefix("2001:db8:1::/48"), Home: true}, lat: 51.5074, lon: -0.1278, accKm: 20, weight: 2, v6: true},
	{Place: Place{Name: "Tokyo", Country: "JP", Network: netip.MustParsePrefix("2001:db8:2::/48"), Home: true}, lat: 35.6762, lon: 139.6503, accKm: 20, weight: 1, v6: true},

	// Attack sources only: anonymizers and clouds.
	placeVPN, placeHosting, placeTor, placeCloud,
}

// Places returns the places the simulator uses: the homes of normal users
// and the sources of attacks.
func Places() []Place {
	out := make([]Place, len(places))
	for i, p := range places {
		out[i] = p.Place
	}
	return out
}

// The anonymous places, where attackers come from.
var (
	placeVPN = &place{Place: Place{Name: "Amsterdam", Country: "NL", Network: netip.MustParsePrefix("203.0.113.192/27"), Anonymous: true},
		lat: 52.3676, lon: 4.9041, accKm: 50}
	placeHosting = &place{Place: Place{Name: "Ashburn", Country: "US", Network: netip.MustParsePrefix("203.0.113.224/28"), Anonymous: true},
		lat: 39.0438, lon: -77.4874, accKm: 1000}
	placeTor = &place{Place: Place{Name: "Tor exit relay", Country: "DE", Network: netip.MustParsePrefix("203.0.113.240/28"), Anonymous: true},
		lat: 51.2993, lon: 9.491, accKm: 1000}
	placeCloud = &place{Place: Place{Name: "Seoul", Country: "KR", Network: netip.MustParsePrefix("3.5.140.0/22"), Anonymous: true},
		lat: 37.5665, lon: 126.978, accKm: 1000}
)

// reserved is how many addresses at the top of each IPv4 home network no
// user gets: attackers replaying a stolen cookie or logging in from far
// away use them, so that no attack ever comes from a user's address.
const reserved = 8

// v6Users is how many users an IPv6 home network holds: one /64 each,
// the /64s 0x0001 to v6Users of the /48. The ones above are the
// attackers'.
const v6Users = 0xff00

// hosts returns the number of usable host addresses of an IPv4 network
// (without its network and broadcast addresses).
func hosts(p netip.Prefix) int {
	return 1<<(32-p.Bits()) - 2
}

// userCapacity is how many users a home place can hold.
func (p *place) userCapacity() int {
	if p.v6 {
		return v6Users
	}
	return hosts(p.Network) - reserved
}

// v4 returns the address at offset n (1 = the first host) of network p.
func v4(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(n)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// v6 returns an address of the /64 number subnet of the /48 p, with a
// random interface identifier (as SLAAC privacy addresses have).
func v6(p netip.Prefix, subnet uint16, r *rand.Rand) netip.Addr {
	b := p.Masked().Addr().As16()
	binary.BigEndian.PutUint16(b[6:8], subnet)
	iid := r.Uint64() | 1<<56 // never all-zero
	binary.BigEndian.PutUint64(b[8:], iid)
	return netip.AddrFrom16(b)
}

// userAddr returns the address of the k-th user (from 0) living at p, with
// perm a permutation of the IPv4 user offsets (so that addresses are not
// handed out in order).
func (p *place) userAddr(k int, perm []int, r *rand.Rand) netip.Addr {
	if p.v6 {
		return v6(p.Network, uint16(k+1), r)
	}
	return v4(p.Network, perm[k]+1)
}

// attackAddr returns the n-th attacker address of a place: for a home
// network one of its reserved addresses, for the others any host.
func (p *place) attackAddr(n uint64, r *rand.Rand) netip.Addr {
	switch {
	case p.v6:
		return v6(p.Network, uint16(v6Users+1+int(n%0xfe)), r)
	case p.Home:
		h := hosts(p.Network)
		return v4(p.Network, h-reserved+1+int(n%reserved))
	default:
		return v4(p.Network, 1+int(n%uint64(hosts(p.Network))))
	}
}

// distanceKm is the distance between two places less their accuracy
// radii: what the detector's impossible-travel rule compares.
func distanceKm(a, b *place) float64 {
	return geo.DistanceKm(a.lat, a.lon, b.lat, b.lon) - a.accKm - b.accKm
}

// net24 is the network the detector takes an address to stand for (a /24,
// or a /64 for IPv6).
func net24(ip netip.Addr) netip.Prefix {
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}
