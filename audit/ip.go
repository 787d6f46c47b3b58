package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"sync"

	"github.com/sessionmon/sessionmon/geo"
)

// MinIPKeyLen is the shortest key accepted for pseudonymizing addresses.
const MinIPKeyLen = 32

// PseudonymPrefix marks a pseudonymized address where an address is
// shown (timelines, exports).
const PseudonymPrefix = "hmac:"

// IPPolicy decides what the audit log keeps of an IP address. By default
// the address itself. With a key, for GDPR (data minimization), a
// pseudonym instead: HMAC-SHA-256 of the address under the key (its first
// 16 bytes, hex). The same address always gives the same pseudonym under
// one key, so investigations can still follow an address across users and
// sessions, but without the key the address cannot be recovered (the IPv4
// space is small enough to brute-force an unkeyed hash); destroying the
// key makes the log anonymous. With a GeoIP resolver, the country and
// city are kept too, in both modes.
type IPPolicy struct {
	pseudonymize bool
	geo          geo.Resolver
	macs         sync.Pool
}

// NewIPPolicy returns a policy. key nil keeps addresses; otherwise it must
// be at least MinIPKeyLen bytes. res may be nil (no locations).
func NewIPPolicy(key []byte, res geo.Resolver) (*IPPolicy, error) {
	p := &IPPolicy{geo: res}
	if key != nil {
		if len(key) < MinIPKeyLen {
			return nil, fmt.Errorf("IP pseudonymization key: %d bytes, want at least %d", len(key), MinIPKeyLen)
		}
		k := append([]byte(nil), key...)
		p.pseudonymize = true
		p.macs.New = func() any { return hmac.New(sha256.New, k) }
	}
	return p, nil
}

// Pseudonymizes reports whether addresses are replaced by pseudonyms.
func (p *IPPolicy) Pseudonymizes() bool { return p != nil && p.pseudonymize }

// IPRecord is what is stored of an address.
type IPRecord struct {
	Addr    netip.Addr // the address, or the zero Addr when pseudonymized
	Hash    string     // the pseudonym (hex), when pseudonymized
	Country string
	City    string
}

// Display is the address as shown to people: the address, or the
// pseudonym with PseudonymPrefix.
func (r IPRecord) Display() string {
	if r.Hash != "" {
		return PseudonymPrefix + r.Hash
	}
	if r.Addr.IsValid() {
		return r.Addr.Unmap().String()
	}
	return ""
}

// ErrBadIP is returned for an address that does not parse.
var ErrBadIP = errors.New("not an IP address")

// Apply returns what is kept of the address s ("" gives a zero record).
func (p *IPPolicy) Apply(s string) (IPRecord, error) {
	if s == "" {
		return IPRecord{}, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return IPRecord{}, fmt.Errorf("%q: %w", s, ErrBadIP)
	}
	addr = addr.WithZone("")
	var r IPRecord
	if p != nil && p.geo != nil {
		if loc := p.geo.Lookup(addr); loc.Known {
			r.Country, r.City = loc.Country, loc.City
		}
	}
	if !p.Pseudonymizes() {
		r.Addr = addr
		return r, nil
	}
	r.Hash = p.hash(addr)
	return r, nil
}

// Pseudonym returns the pseudonym of an address given as text, or s
// itself when the policy keeps addresses or s is not an address.
func (p *IPPolicy) Pseudonym(s string) string {
	if !p.Pseudonymizes() {
		return s
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return PseudonymPrefix + p.hash(addr.WithZone(""))
}

func (p *IPPolicy) hash(addr netip.Addr) string {
	// One form per address: IPv4 and its IPv4-mapped IPv6 form are the
	// same address.
	b := addr.Unmap().As16()
	m := p.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(b[:])
	var sum [sha256.Size]byte
	s := m.Sum(sum[:0])
	p.macs.Put(m)
	return hex.EncodeToString(s[:16])
}
