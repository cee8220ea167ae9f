package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// Header is the Authentication-Results field (RFC 8601) of a result, by
// authservID (our host name), CRLF-ended.
func (r Result) Header(authservID string) string {
	var results []authres.Result
	// Only domain names go in (RFC 8601 allows smtp.mailfrom=DOMAIN): a
	// local part, a HELO argument or a d= is the sender's text, and a
	// quote or backslash in it could forge results of its own.
	spfRes := &authres.SPFResult{Value: authres.ResultValue(r.SPF)}
	if r.nullFrom {
		spfRes.Helo = domainOnly(r.Helo)
	} else {
		_, d, _ := strings.Cut(r.SPFFrom, "@")
		spfRes.From = domainOnly(d)
	}
	if r.SPF != "" {
		results = append(results, spfRes)
	}
	if len(r.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range r.DKIM {
		results = append(results, &authres.DKIMResult{Value: authres.ResultValue(d.Result), Domain: domainOnly(d.Domain), Reason: printable(d.Reason)})
	}
	results = append(results, &authres.DMARCResult{Value: authres.ResultValue(r.DMARC.Result), From: domainOnly(r.FromHead), Reason: printable(r.DMARC.Reason)})
	if r.ARC.Value != "" {
		// (go-msgauth formats ARCResult without its method name.)
		results = append(results, &authres.GenericResult{Method: "arc", Value: authres.ResultValue(r.ARC.Value)})
	}
	return "Authentication-Results: " + fold(authres.Format(authservID, results)) + "\r\n"
}

// fold puts each result of a formatted field value on a line of its own.
func fold(v string) string {
	return strings.TrimRight(strings.ReplaceAll(strings.ReplaceAll(v, " ;", ";"), "; ", ";\r\n\t"), " ")
}

// printable keeps a reason to printable ASCII without quotes, as a header
// field's value must be.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == ';' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// domainOnly keeps a value to the characters of a domain name (letters,
// digits, "-", ".", "_"), and to 253 of them: "" for anything else.
func domainOnly(s string) string {
	if len(s) > 253 {
		return ""
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return ""
		}
	}
	return s
}
