package audit

import (
	"errors"
	"strings"
	"testing"

	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestIPPolicyKeepsAddresses(t *testing.T) {
	var nilPolicy *IPPolicy
	for _, p := range []*IPPolicy{nilPolicy, mustPolicy(t, nil, nil)} {
		r, err := p.Apply("203.0.113.7")
		if err != nil || r.Addr.String() != "203.0.113.7" || r.Hash != "" || r.Display() != "203.0.113.7" {
			t.Fatalf("%+v %v", r, err)
		}
		if p.Pseudonymizes() || p.Pseudonym("203.0.113.7") != "203.0.113.7" {
			t.Fatal("pseudonymizes without a key")
		}
	}
	r, err := mustPolicy(t, nil, nil).Apply("")
	if err != nil || r != (IPRecord{}) || r.Display() != "" {
		t.Fatalf("empty: %+v %v", r, err)
	}
	if _, err := mustPolicy(t, nil, nil).Apply("nope"); !errors.Is(err, ErrBadIP) {
		t.Fatalf("bad IP: %v", err)
	}
}

func TestIPPolicyPseudonymizes(t *testing.T) {
	paths := geotest.MustBuild(t)
	res, err := geo.Open(geo.Config{CityDB: paths.City})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	p := mustPolicy(t, testKey, res)
	r, err := p.Apply("198.51.100.7")
	if err != nil {
		t.Fatal(err)
	}
	if r.Addr.IsValid() || len(r.Hash) != 32 || r.Country != "US" || r.City != "New York" {
		t.Fatalf("%+v", r)
	}
	if !strings.HasPrefix(r.Display(), PseudonymPrefix) || strings.Contains(r.Display(), "198.51") {
		t.Fatalf("display %q", r.Display())
	}
	// Stable, and one pseudonym for an IPv4 address in either form.
	r2, _ := p.Apply("::ffff:198.51.100.7")
	if r2.Hash != r.Hash || p.Pseudonym("198.51.100.7") != PseudonymPrefix+r.Hash {
		t.Fatalf("unstable: %s %s", r.Hash, r2.Hash)
	}
	// Another address, another key: other pseudonyms.
	r3, _ := p.Apply("198.51.100.8")
	other := mustPolicy(t, []byte(strings.Repeat("k", 32)), nil)
	r4, _ := other.Apply("198.51.100.7")
	if r3.Hash == r.Hash || r4.Hash == r.Hash {
		t.Fatal("pseudonyms collide")
	}
	// Private addresses have no place.
	r5, _ := p.Apply("10.1.2.3")
	if r5.Country != "" || r5.Hash == "" {
		t.Fatalf("private: %+v", r5)
	}
	if _, err := NewIPPolicy([]byte("short"), nil); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short key: %v", err)
	}
}

func mustPolicy(t *testing.T, key []byte, res geo.Resolver) *IPPolicy {
	t.Helper()
	p, err := NewIPPolicy(key, res)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
