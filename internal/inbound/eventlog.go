package inbound

import (
	"strings"
	"unicode"

	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
)

// logEntry is a message's entry in the message log and its events of
// acceptance: accepted for each remote recipient, received for each local
// one. Mail from our senders (logged in, or a trusted network) is
// outbound and counts in the sender's domain; mail from outside is
// inbound and counts in each recipient's.
func logEntry(s *smtpserver.SessionInfo, env *smtpserver.Transaction, hdr headerInfo, m *store.Message, trusted bool, hostname string) (*store.LoggedMessage, []store.Event) {
	l := &store.LoggedMessage{QueueID: m.QueueID, Direction: store.Inbound, Sender: m.SMTPEnvelope.MailFrom, From: m.From,
		Subject: m.Subject, MessageID: hdr.MessageID, Size: m.Size, Stream: env.Stream, Tags: env.Tags, Metadata: env.Metadata}
	if s.Auth != nil || trusted {
		l.Direction, l.Domain = store.Outbound, env.From.Domain
		if s.Auth != nil {
			l.User = s.Auth.User
		}
		if l.MessageID == "" && s.Auth != nil {
			l.MessageID = "<" + m.QueueID + "@" + hostname + ">" // as submissionFields wrote it
		}
	}
	var events []store.Event
	for _, r := range env.Recipients {
		if found, ok := r.Target.(local); ok && len(found.users) == 0 {
			continue // only forwarded: the forward is a message of its own
		}
		addr := r.Addr.String()
		l.Recipients = append(l.Recipients, addr)
		ev := store.Event{Kind: store.EventReceived, QueueID: m.QueueID, Recipient: addr, Domain: l.Domain}
		if _, remote := r.Target.(store.QueuedRecipient); remote {
			ev.Kind = store.EventAccepted
		} else if l.Direction == store.Inbound {
			ev.Domain = r.Addr.Domain
			if l.Domain == "" {
				l.Domain = r.Addr.Domain
			}
		}
		events = append(events, ev)
	}
	l.Domain = strings.ToLower(l.Domain)
	l.From, l.Subject, l.MessageID = logText(l.From), logText(l.Subject), logText(l.MessageID)
	return l, events
}

// logText makes a header's text fit the log: valid UTF-8 (an 8-bit
// Latin-1 subject is not; PostgreSQL refuses such text and so would the
// whole message), no control characters (NUL, line breaks), at most 998
// characters.
func logText(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return truncateRunes(s, 998)
}
