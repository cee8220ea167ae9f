package mailauth

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"blitiri.com.ar/go/spf"
)

// spfResolver is netResolver for the SPF library, with one change: an SPF
// record with a syntax error anywhere is handed over as a record whose
// first term is unknown. RFC 7208 4.6 makes such a record a permerror
// before anything is evaluated; the library reads terms one by one and
// would pass on "ip4:192.0.2.1 bogus" for 192.0.2.1 (pyspf, in the
// tests, does not).
type spfResolver struct{ netResolver }

// invalidRecord is what a record that does not parse becomes.
const invalidRecord = "v=spf1 syntax-error"

func (r spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.netResolver.LookupTXT(ctx, name)
	for i, t := range txts {
		if isSPF(t) && !validSPF(t) {
			txts[i] = invalidRecord
		}
	}
	return txts, err
}

func isSPF(t string) bool {
	return len(t) >= 6 && strings.EqualFold(t[:6], "v=spf1") && (len(t) == 6 || t[6] == ' ')
}

// validSPF reports whether an SPF record parses by RFC 7208 12's grammar,
// with at most one redirect= and one exp= (6).
func validSPF(record string) bool {
	redirects, exps := 0, 0
	for _, term := range strings.Fields(record[6:]) {
		name, value, isModifier := modifierParts(term)
		if isModifier {
			switch strings.ToLower(name) {
			case "redirect":
				redirects++
			case "exp":
				exps++
			}
			if !validName(name) || ((strings.EqualFold(name, "redirect") || strings.EqualFold(name, "exp")) && !validDomainSpec(value)) ||
				!validMacroString(value) {
				return false
			}
			continue
		}
		if !validDirective(term) {
			return false
		}
	}
	return redirects <= 1 && exps <= 1
}

// modifierParts splits "name=value" when the term is a modifier: an "="
// before any ":" or "/".
func modifierParts(term string) (name, value string, ok bool) {
	i := strings.IndexAny(term, "=:/")
	if i < 0 || term[i] != '=' {
		return "", "", false
	}
	return term[:i], term[i+1:], true
}

func validName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for i := 1; i < len(n); i++ {
		c := n[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func validDirective(term string) bool {
	if term != "" && strings.ContainsRune("+-~?", rune(term[0])) {
		term = term[1:]
	}
	i := strings.IndexAny(term, ":/")
	mech, rest := term, ""
	if i >= 0 {
		mech, rest = term[:i], term[i:]
	}
	switch strings.ToLower(mech) {
	case "all":
		return rest == ""
	case "include", "exists":
		return strings.HasPrefix(rest, ":") && validDomainSpec(rest[1:])
	case "ptr":
		return rest == "" || (strings.HasPrefix(rest, ":") && validDomainSpec(rest[1:]))
	case "a", "mx":
		spec, ok := cutDualCIDR(rest)
		return ok && (spec == "" || (strings.HasPrefix(spec, ":") && validDomainSpec(spec[1:])))
	case "ip4", "ip6":
		if !strings.HasPrefix(rest, ":") {
			return false
		}
		addr, bits, hasBits := strings.Cut(rest[1:], "/")
		ip, err := netip.ParseAddr(addr)
		v4 := strings.EqualFold(mech, "ip4")
		if err != nil || ip.Zone() != "" || v4 != ip.Is4() {
			return false
		}
		max := 128
		if v4 {
			max = 32
		}
		return !hasBits || validCIDR(bits, max)
	}
	return false
}

// cutDualCIDR takes "[/n][//m]" off the end of a or mx's rest.
func cutDualCIDR(rest string) (string, bool) {
	if i := strings.Index(rest, "//"); i >= 0 {
		if !validCIDR(rest[i+2:], 128) {
			return "", false
		}
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		if !validCIDR(rest[i+1:], 32) {
			return "", false
		}
		rest = rest[:i]
	}
	return rest, true
}

func validCIDR(s string, max int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= max && (s == "0" || s[0] != '0')
}

// validDomainSpec: a non-empty macro-string whose macros are well formed
// (RFC 7208 7.1).
func validDomainSpec(s string) bool { return s != "" && validMacroString(s) }

// validMacroString: every "%" starts "%%", "%_", "%-" or a macro
// "%{letter[digits][r][delimiters]}" of a letter SPF knows.
func validMacroString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return false
		}
		if c != '%' {
			continue
		}
		if i+1 >= len(s) {
			return false
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return false
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return false
		}
		body := s[i+2 : i+end]
		if body == "" || !strings.ContainsRune("slodiphcrtvSLODIPHCRTV", rune(body[0])) {
			return false
		}
		j := 1
		for j < len(body) && body[j] >= '0' && body[j] <= '9' {
			j++
		}
		if j < len(body) && (body[j] == 'r' || body[j] == 'R') {
			j++
		}
		for ; j < len(body); j++ {
			if !strings.ContainsRune(".-+,/_=", rune(body[j])) {
				return false
			}
		}
		i += end
	}
	return true
}

// ValidSPF reports whether an SPF record ("v=spf1 ...") parses by RFC 7208
// 12's grammar.
func ValidSPF(record string) bool { return isSPF(record) && validSPF(record) }

// CheckSPF is SPF's verdict on mail from sender sent by ip, which greeted
// with helo (RFC 7208 4), through r.
func CheckSPF(ctx context.Context, r Resolver, ip netip.Addr, helo, sender string) (spf.Result, error) {
	return spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, sender,
		spf.WithContext(ctx), spf.WithResolver(spfResolver{netResolver{r}}))
}
