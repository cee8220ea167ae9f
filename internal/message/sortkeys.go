package message

import (
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// SortKeys are what IMAP's SORT (RFC 5256, RFC 5957 DISPLAY) compares of a
// message besides its arrival date and size, derived from its envelope
// once: by the search indexer, which stores them beside the index, or by
// SORT itself for a message not indexed yet. They hold no control
// characters.
type SortKeys struct {
	Sent                   time.Time // the Date field; zero when it does not parse
	Subject                string    // the base subject
	From, To, Cc           string    // the first address's mailbox
	DisplayFrom, DisplayTo string
}

// KeysOf derives the sort keys of an envelope (nil: none).
func KeysOf(e *Envelope) SortKeys {
	var k SortKeys
	if e == nil {
		return k
	}
	if d, err := MailDate(e.Date); err == nil {
		k.Sent = d
	}
	k.Subject, _ = BaseSubject(e.Subject)
	k.From, k.To, k.Cc = firstMailbox(e.From), firstMailbox(e.To), firstMailbox(e.Cc)
	k.DisplayFrom, k.DisplayTo = displayName(e.From), displayName(e.To)
	for _, f := range []*string{&k.Subject, &k.From, &k.To, &k.Cc, &k.DisplayFrom, &k.DisplayTo} {
		*f = printable(*f)
	}
	return k
}

// printable replaces control characters with spaces: a store may return
// many keys in one text, apart with control characters.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// MailDate parses a Date field (RFC 5322 3.3), leniently as net/mail does.
func MailDate(s string) (time.Time, error) { return mail.ParseDate(s) }

// firstMailbox is the local part of a list's first address (RFC 5256 3:
// "addr-mailbox"), or the name of a group that comes first (ENVELOPE
// writes a group's start as an address whose mailbox is its name).
func firstMailbox(list []Address) string {
	if len(list) == 0 {
		return ""
	}
	if list[0].Group != "" {
		return list[0].Group
	}
	return list[0].Mailbox
}

// displayName is the display name of a list's first address, decoded, or
// its address when it has none (RFC 5957 2).
func displayName(list []Address) string {
	for _, a := range list {
		if a.Group != "" {
			return DecodeWords(a.Group)
		}
		if a.GroupEnd {
			continue
		}
		if a.Name != "" {
			return DecodeWords(a.Name)
		}
		if a.Host == "" {
			return a.Mailbox
		}
		return a.Mailbox + "@" + a.Host
	}
	return ""
}

// BaseSubject extracts the base subject of a Subject field (RFC 5256 2.1):
// decoded, white space folded, and the "Re:", "Fwd:", "[blob]" and "(fwd)"
// that replies and forwards add taken off; reply says whether the subject
// was a reply's or a forward's (something taken off besides blobs and
// white space).
func BaseSubject(subject string) (base string, reply bool) {
	s := DecodeWords(subject)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), " ")
	for {
		// (2) trailing "(fwd)" and white space.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				s, reply = t[:len(t)-5], true
				continue
			}
			s = t
			break
		}
		// (3)-(5) leading "re:"/"fw:"/"fwd:" (each after any blobs) and
		// blobs, as long as something is left.
		for {
			changed := false
			if rest, ok := cutRefwd(s); ok {
				s, changed, reply = rest, true, true
			}
			if rest, ok := cutBlob(s); ok && strings.TrimSpace(rest) != "" {
				s, changed = rest, true
			}
			if !changed {
				break
			}
		}
		// (6) "[fwd: ...]" around the whole.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && strings.HasSuffix(s, "]") {
			s, reply = strings.TrimSpace(s[5:len(s)-1]), true
			continue
		}
		return s, reply
	}
}

// cutRefwd removes a leading subj-refwd: *WSP ("re" / "fw" / "fwd") *WSP
// *subj-blob ":".
func cutRefwd(s string) (string, bool) {
	t := strings.TrimLeft(s, " ")
	var rest string
	switch {
	case len(t) >= 3 && strings.EqualFold(t[:3], "fwd"):
		rest = t[3:]
	case len(t) >= 2 && (strings.EqualFold(t[:2], "re") || strings.EqualFold(t[:2], "fw")):
		rest = t[2:]
	default:
		return s, false
	}
	rest = strings.TrimLeft(rest, " ")
	for {
		r, ok := cutBlob(rest)
		if !ok {
			break
		}
		rest = r
	}
	if !strings.HasPrefix(rest, ":") {
		return s, false
	}
	return strings.TrimLeft(rest[1:], " "), true
}

// cutBlob removes a leading subj-blob: "[" *BLOBCHAR "]" *WSP.
func cutBlob(s string) (string, bool) {
	t := strings.TrimLeft(s, " ")
	if !strings.HasPrefix(t, "[") {
		return s, false
	}
	end := strings.IndexAny(t[1:], "[]")
	if end < 0 || t[1+end] != ']' {
		return s, false
	}
	return strings.TrimLeft(t[end+2:], " "), true
}
