package console

import (
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxyIP returns a ClientIP for a console behind reverse proxies:
// when the connection comes from one of the trusted networks, the client
// is the right-most X-Forwarded-For address that is not itself trusted
// (what the outermost trusted proxy saw); otherwise it is the connection's
// address. Addresses the client wrote into the header itself are never
// believed past an untrusted hop.
func TrustedProxyIP(trusted []netip.Prefix) func(*http.Request) string {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) string {
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return remoteIP(r)
		}
		addr := peer.Addr().Unmap()
		if !isTrusted(addr) {
			return addr.String()
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			a = a.Unmap().WithZone("")
			if !isTrusted(a) {
				return a.String()
			}
			addr = a
		}
		return addr.String()
	}
}
