// Package clientip finds the address of the client behind an HTTP request, trusting
// X-Forwarded-For only as far as it was written by proxies the operator listed.
//
// A proxy appends the address it received a connection from to X-Forwarded-For; whatever
// stands to the left of that was written by someone else, possibly the client. So the header
// is read from the right: while the hop is a trusted proxy, step left; the first address that
// is not a trusted proxy is the client. A request whose peer is not a trusted proxy is its
// own client, whatever its headers say.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParseNetworks parses trusted proxy networks: CIDR prefixes ("10.0.0.0/8", "fd00::/8") or
// single addresses ("127.0.0.1"). An item may hold several, separated by commas.
func ParseNetworks(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range items {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if strings.Contains(s, "/") {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return nil, fmt.Errorf("%q is not a network (want CIDR such as 10.0.0.0/8)", s)
				}
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address or network", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// Resolver finds the client address of requests. The zero Resolver trusts no proxy.
type Resolver struct {
	trusted []netip.Prefix
}

// NewResolver returns a Resolver that trusts X-Forwarded-For hops from the given networks.
func NewResolver(trusted []netip.Prefix) Resolver {
	return Resolver{trusted: trusted}
}

// Trusts reports whether a is in one of the trusted networks.
func (r Resolver) Trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client address of req: its peer, or, when the peer is a trusted proxy,
// the right-most X-Forwarded-For address that is not a trusted proxy. When the header runs
// out or holds something that is not an address before such a hop is found, the last trusted
// hop is the answer (the proxy's clients then share its address's limits, which is the safe
// way to be wrong). ok is false only if req.RemoteAddr is not an address.
func (r Resolver) Client(req *http.Request) (addr netip.Addr, ok bool) {
	peer, ok := parseHop(req.RemoteAddr)
	if !ok {
		return netip.Addr{}, false
	}
	if !r.Trusts(peer) {
		return peer, true
	}
	client := peer
	// Several header lines are one list, in order (RFC 9110, 5.3): a client that sends its
	// own line before the proxy's gains nothing.
	hops := req.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		line := hops[i]
		for line != "" {
			var hop string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				hop, line = line[j+1:], line[:j]
			} else {
				hop, line = line, ""
			}
			a, valid := parseHop(strings.TrimSpace(hop))
			if !valid {
				return client, true
			}
			client = a
			if !r.Trusts(a) {
				return a, true
			}
		}
	}
	return client, true
}

// parseHop parses an address as proxies write it: "1.2.3.4", "2001:db8::1", or with a port
// ("1.2.3.4:5678", "[2001:db8::1]:5678"). Zones are refused.
func parseHop(s string) (netip.Addr, bool) {
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, herr := net.SplitHostPort(s)
		if herr != nil {
			return netip.Addr{}, false
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, false
		}
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
