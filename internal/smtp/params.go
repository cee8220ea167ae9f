package smtp

import (
	"strconv"
	"strings"
)

// MailParams are the ESMTP parameters of MAIL FROM that Mailroom supports.
type MailParams struct {
	Size     int64  // RFC 1870 SIZE=, 0 when not given
	Body     string // RFC 6152 BODY=7BIT or 8BITMIME, "" when not given
	SMTPUTF8 bool   // RFC 6531
	Ret      string // RFC 3461 RET=FULL or HDRS
	EnvID    string // RFC 3461 ENVID=, decoded from xtext
	Auth     string // RFC 4954 5 AUTH=, decoded from xtext; "<>" for none
	// RequireTLS (RFC 8689): the message may travel only over TLS with
	// each next hop authenticated (MTA-STS or DANE) and offering it.
	RequireTLS bool
}

// RcptParams are the ESMTP parameters of RCPT TO (RFC 3461 DSN).
type RcptParams struct {
	Notify []string // NEVER, or some of SUCCESS, FAILURE, DELAY
	ORcpt  string   // "addr-type;address", address decoded from xtext
}

// Parameter errors.
var (
	ErrParamSyntax  = &Reply{Code: 501, Enhanced: "5.5.4", Text: "Syntax error in parameters"}
	ErrUnknownParam = &Reply{Code: 555, Enhanced: "5.5.4", Text: "Unsupported MAIL FROM or RCPT TO parameter"}
)

// splitParams splits "K=V K2 K3=V3" into keys (upper case) and values,
// refusing a key given twice.
func splitParams(s string) ([][2]string, error) {
	var out [][2]string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, " ") {
		if f == "" {
			continue
		}
		k, v, hasValue := strings.Cut(f, "=")
		k = strings.ToUpper(k)
		if k == "" || seen[k] || hasValue && v == "" {
			return nil, ErrParamSyntax
		}
		seen[k] = true
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// ParseMailParams parses the parameters after MAIL FROM:<path>.
func ParseMailParams(s string) (MailParams, error) {
	var p MailParams
	kvs, err := splitParams(s)
	if err != nil {
		return p, err
	}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || len(v) > 20 || !allDigits(v) {
				return p, Errorf(501, "5.5.4", "SIZE must be a number of octets")
			}
			p.Size = n
		case "BODY":
			switch strings.ToUpper(v) {
			case "7BIT", "8BITMIME":
				p.Body = strings.ToUpper(v)
			default:
				return p, Errorf(555, "5.5.4", "BODY must be 7BIT or 8BITMIME")
			}
		case "SMTPUTF8":
			if v != "" {
				return p, Errorf(501, "5.5.4", "SMTPUTF8 takes no value")
			}
			p.SMTPUTF8 = true
		case "RET":
			switch strings.ToUpper(v) {
			case "FULL", "HDRS":
				p.Ret = strings.ToUpper(v)
			default:
				return p, Errorf(501, "5.5.4", "RET must be FULL or HDRS")
			}
		case "ENVID":
			id, ok := DecodeXtext(v)
			if !ok || v == "" || len(v) > 100 || !printableASCII(id) {
				return p, Errorf(501, "5.5.4", "ENVID must be xtext of at most 100 characters, decoding to printable ASCII")
			}
			p.EnvID = id
		case "REQUIRETLS":
			if v != "" {
				return p, Errorf(501, "5.5.4", "REQUIRETLS takes no value")
			}
			p.RequireTLS = true
		case "AUTH":
			id, ok := DecodeXtext(v)
			if !ok || id == "" || len(v) > 500 {
				return p, Errorf(501, "5.5.4", "AUTH= must be xtext: an address or <>")
			}
			p.Auth = id
		default:
			return p, Errorf(555, "5.5.4", "Unsupported MAIL FROM parameter %s", k)
		}
	}
	return p, nil
}

// ParseRcptParams parses the parameters after RCPT TO:<path>.
func ParseRcptParams(s string) (RcptParams, error) {
	var p RcptParams
	kvs, err := splitParams(s)
	if err != nil {
		return p, err
	}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k {
		case "NOTIFY":
			if p.Notify, err = parseNotify(v); err != nil {
				return p, err
			}
		case "ORCPT":
			typ, addr, ok := strings.Cut(v, ";")
			dec, valid := DecodeXtext(addr)
			if !ok || !isAddrType(typ) || !valid || dec == "" || len(v) > 500 || !printableASCII(dec) {
				return p, Errorf(501, "5.5.4", "ORCPT must be addr-type;xtext-address")
			}
			p.ORcpt = strings.ToLower(typ) + ";" + dec
		default:
			return p, Errorf(555, "5.5.4", "Unsupported RCPT TO parameter %s", k)
		}
	}
	return p, nil
}

// parseNotify checks NOTIFY=NEVER or a list of SUCCESS, FAILURE and DELAY
// (RFC 3461 4.1).
func parseNotify(v string) ([]string, error) {
	bad := Errorf(501, "5.5.4", "NOTIFY must be NEVER or a comma-separated list of SUCCESS, FAILURE, DELAY")
	var out []string
	seen := map[string]bool{}
	for _, n := range strings.Split(strings.ToUpper(v), ",") {
		switch n {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
		default:
			return nil, bad
		}
		if seen[n] {
			return nil, bad
		}
		seen[n] = true
		out = append(out, n)
	}
	if seen["NEVER"] && len(out) > 1 {
		return nil, bad
	}
	return out, nil
}

// allDigits reports whether s is 1*DIGIT (RFC 1870 size-value); ParseInt
// alone would also take a sign.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isAddrType reports whether t is an ORCPT addr-type: an atom such as
// "rfc822" (RFC 3461 4.2).
func isAddrType(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] >= 0x80 || !isAtext(rune(t[i])) {
			return false
		}
	}
	return t != ""
}

// printableASCII reports whether a decoded ENVID or ORCPT holds only
// printable US-ASCII and spaces (RFC 3461 4.2, 4.4). Both are stored with
// the envelope and end up in DSN header fields (RFC 3464 2.2.1, 2.3.1),
// where a decoded CR or LF would inject a field.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// DecodeXtext decodes RFC 3461 4 xtext ("+XX" hex escapes). It reports
// false for malformed input.
func DecodeXtext(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || s[i+1] >= 'a' || s[i+2] >= 'a' {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// EncodeXtext encodes s as RFC 3461 xtext.
func EncodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			b.WriteString("+" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
