package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// Header is the Authentication-Results field (RFC 8601) of a result, by
// authservID (our host name), CRLF-ended.
func (r Result) Header(authservID string) string {
	var results []authres.Result
	spfRes := &authres.SPFResult{Value: authres.ResultValue(r.SPF)}
	if r.nullFrom {
		spfRes.Helo = r.Helo
	} else {
		spfRes.From = r.SPFFrom
	}
	if r.SPF != "" {
		results = append(results, spfRes)
	}
	if len(r.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range r.DKIM {
		results = append(results, &authres.DKIMResult{Value: authres.ResultValue(d.Result), Domain: d.Domain, Reason: printable(d.Reason)})
	}
	results = append(results, &authres.DMARCResult{Value: authres.ResultValue(r.DMARC.Result), From: r.FromHead, Reason: printable(r.DMARC.Reason)})
	if r.ARC.Value != "" {
		// (go-msgauth formats ARCResult without its method name.)
		results = append(results, &authres.GenericResult{Method: "arc", Value: authres.ResultValue(r.ARC.Value)})
	}
	return "Authentication-Results: " + fold(authres.Format(authservID, results)) + "\r\n"
}

// fold puts each result of a formatted field value on a line of its own.
func fold(v string) string {
	return strings.ReplaceAll(strings.ReplaceAll(v, " ;", ";"), "; ", ";\r\n\t")
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
