// Package geo resolves IP addresses to places and networks for the
// detector: country, city, coordinates with their accuracy radius, and the
// network's ASN and whether it is an anonymizer or a hosting provider.
// Private, loopback and unknown addresses resolve to a Location with Known
// false, and never take part in geographic rules.
package geo

import (
	"math"
	"net/netip"
)

// Location is what is known of an IP address.
type Location struct {
	// Known is false for private, loopback, link-local and unspecified
	// addresses, and for addresses no database knows.
	Known   bool    `json:"known"`
	Country string  `json:"country,omitempty"` // ISO 3166-1 alpha-2
	City    string  `json:"city,omitempty"`
	Lat     float64 `json:"lat,omitempty"`
	Lon     float64 `json:"lon,omitempty"`
	// AccuracyKm is the radius around (Lat, Lon) the address is likely in.
	AccuracyKm float64 `json:"accuracy_km,omitempty"`
	ASN        uint32  `json:"asn,omitempty"`
	ASOrg      string  `json:"as_org,omitempty"`
	// Anonymous is true for anonymizers (VPN, Tor, public proxies) and
	// hosting providers, where the database says so: such addresses are
	// a signal of their own, never evidence of travel.
	Anonymous bool `json:"anonymous,omitempty"`
	// Source says where the answer came from: "override", "mmdb".
	Source string `json:"source,omitempty"`
}

// Resolver looks up addresses. Implementations are safe for concurrent use.
type Resolver interface {
	Lookup(ip netip.Addr) Location
}

// Internal reports whether ip is an address no public database can place:
// private, loopback, link-local, multicast, unspecified or CGNAT.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return !ip.IsValid() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
		cgnat.Contains(ip)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// DistanceKm is the great-circle distance between two points (haversine,
// mean Earth radius 6371 km).
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}

// None is a resolver that knows nothing: geographic rules are off.
type None struct{}

// Lookup implements Resolver.
func (None) Lookup(netip.Addr) Location { return Location{} }
