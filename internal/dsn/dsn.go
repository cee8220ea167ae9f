// Package dsn writes delivery status notifications (bounces) as RFC 3464
// multipart/report messages, with RFC 3461's ENVID, ORCPT and RET honoured,
// marked Auto-Submitted (RFC 3834) and sent from the null sender so that
// they are never bounced in turn.
package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Recipient is one recipient the report is about.
type Recipient struct {
	Address   string // final recipient
	ORcpt     string // "rfc822;addr" as given with the original RCPT, or ""
	Detail    string // the reply or failure text
	RemoteMTA string // the host that answered, or ""
}

// Actions (RFC 3464 2.3.3): what happened to the recipients of a report.
const (
	Failed    = "failed"    // not delivered, and never will be
	Delayed   = "delayed"   // not delivered yet, still being tried
	Delivered = "delivered" // delivered to a mailbox here
	Relayed   = "relayed"   // handed to a next hop that does not send DSNs
)

// Report is a delivery status notification for one message.
type Report struct {
	ReportingMTA string    // our hostname
	To           string    // the original envelope sender
	EnvID        string    // RFC 3461 ENVID, or ""
	Arrival      time.Time // when the original was accepted
	Recipients   []Recipient
	// Full returns the whole message (RET=FULL), else its header; reports
	// of success carry the header only (RFC 3461 4.3).
	Full bool
	// Action is the same for every recipient; "" means Failed. A delay
	// warning says the message is tried until RetryUntil.
	Action     string
	RetryUntil time.Time
	// ReturnLimit caps what the report returns of the original (0: no
	// cap): a message of more than this (OriginalSize) comes back as its
	// header only, and a header of more is cut at a line within it.
	ReturnLimit  int64
	OriginalSize int64
	// EightBit says the original came with BODY=8BITMIME: the returned
	// part is labelled 8bit (RFC 2045 6.1), and the report must be sent
	// as 8BITMIME too (RFC 6152 3).
	EightBit bool
	// SMTPUTF8 says the original came with SMTPUTF8 (RFC 6531): the report
	// is an internationalized one (RFC 6533), as it is too when a recipient
	// address is not ASCII.
	SMTPUTF8 bool
}

// International reports whether the report must be an internationalized
// delivery status notification (RFC 6533): message/global-delivery-status,
// "utf-8" address types, message/global(-headers) for the original, sent
// with SMTPUTF8.
func (r *Report) International() bool {
	if r.SMTPUTF8 || !isASCII(r.To) {
		return true
	}
	if !isASCII(r.EnvID) {
		return true
	}
	for _, rc := range r.Recipients {
		// A next hop's reply with 8-bit octets too: status fields are
		// ASCII but in message/global-delivery-status (RFC 6533 3).
		if !isASCII(rc.Address) || !isASCII(rc.ORcpt) || !isASCII(rc.Detail) || !isASCII(rc.RemoteMTA) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addressType is the type of an address in a status field (RFC 3464 2.1.2,
// RFC 6533 3): "rfc822" for ASCII, "utf-8" for an internationalized one.
func addressType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}

var (
	statusRe = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)
	replyRe  = regexp.MustCompile(`^[245]\d\d `)
)

// status finds the enhanced status code in a reply or failure text, or a
// default: class 5 for a failure, 4 for a delay, 2 for success.
func status(detail, action string) string {
	class := map[string]string{Failed: "5", Delayed: "4", Delivered: "2", Relayed: "2"}[action]
	if m := statusRe.FindString(detail); m != "" && (m[0] == '2') == (class == "2") {
		return class + m[1:]
	}
	return class + ".0.0"
}

// Subjects and opening sentences per action.
var (
	subjects = map[string]string{
		Failed:    "Undelivered Mail Returned to Sender",
		Delayed:   "Delayed Mail (still being retried)",
		Delivered: "Successful Mail Delivery Report",
		Relayed:   "Successful Mail Delivery Report",
	}
	openings = map[string]string{
		Failed:    "Your message could not be delivered to the following recipients:",
		Delivered: "Your message was delivered to the mailboxes of the following recipients:",
		Relayed: "Your message was passed on to the mail systems of the following recipients.\r\n" +
			"Those systems do not report on delivery, so you will hear no more about it\r\n" +
			"unless it fails there:",
	}
)

// Write writes the report, with the original message (or its header)
// read from original, to w.
func (r *Report) Write(w io.Writer, original io.Reader, now time.Time) error {
	action := r.Action
	if action == "" {
		action = Failed
	}
	full := r.Full && action == Failed // RFC 3461 4.3: RET ties to failures
	if r.ReturnLimit > 0 && r.OriginalSize > r.ReturnLimit {
		full = false
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	boundary := "=_mailroom_" + hex.EncodeToString(rnd[:])
	b := &bytes.Buffer{}
	fmt.Fprintf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r.ReportingMTA)
	fmt.Fprintf(b, "To: <%s>\r\n", r.To)
	fmt.Fprintf(b, "Subject: %s\r\n", subjects[action])
	fmt.Fprintf(b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(b, "Message-ID: <%s.dsn@%s>\r\n", hex.EncodeToString(rnd[:]), r.ReportingMTA)
	b.WriteString("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(b, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	b.WriteString("This is a MIME-encapsulated message.\r\n\r\n")

	fmt.Fprintf(b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", boundary)
	if action == Delayed {
		fmt.Fprintf(b, "This is the mail system at %s.\r\n\r\nYour message has not been delivered yet to the following recipients.\r\nIt is still being tried until %s; you need not send it again.\r\n\r\n",
			r.ReportingMTA, r.RetryUntil.Format(time.RFC1123Z))
	} else {
		fmt.Fprintf(b, "This is the mail system at %s.\r\n\r\n%s\r\n\r\n", r.ReportingMTA, openings[action])
	}
	for _, rc := range r.Recipients {
		b.WriteString(fold("  <"+rc.Address+">: "+oneLine(rc.Detail), "    ") + "\r\n")
	}
	switch {
	case full:
		b.WriteString("\r\nThe message follows.\r\n\r\n")
	case r.ReturnLimit > 0:
		fmt.Fprintf(b, "\r\nThe message's header follows (at most %d octets of it).\r\n\r\n", r.ReturnLimit)
	default:
		b.WriteString("\r\nThe message's header follows.\r\n\r\n")
	}

	intl := r.International()
	statusType, fullType, headersType := "message/delivery-status", "message/rfc822", "text/rfc822-headers"
	if intl {
		statusType, fullType, headersType = "message/global-delivery-status", "message/global", "message/global-headers"
	}
	fmt.Fprintf(b, "--%s\r\nContent-Type: %s\r\n%s\r\n", boundary, statusType, cte(intl))
	fmt.Fprintf(b, "Reporting-MTA: dns; %s\r\n", r.ReportingMTA)
	if r.EnvID != "" {
		fmt.Fprintf(b, "Original-Envelope-Id: %s\r\n", oneLine(r.EnvID))
	}
	fmt.Fprintf(b, "Arrival-Date: %s\r\n", r.Arrival.Format(time.RFC1123Z))
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		if rc.ORcpt != "" {
			fmt.Fprintf(b, "Original-Recipient: %s\r\n", oneLine(strings.Replace(rc.ORcpt, ";", "; ", 1)))
		}
		fmt.Fprintf(b, "Final-Recipient: %s; %s\r\nAction: %s\r\nStatus: %s\r\n", addressType(rc.Address), rc.Address, action, status(rc.Detail, action))
		if action == Delayed {
			fmt.Fprintf(b, "Will-Retry-Until: %s\r\n", r.RetryUntil.Format(time.RFC1123Z))
		}
		if rc.RemoteMTA != "" {
			fmt.Fprintf(b, "Remote-MTA: dns; %s\r\n", rc.RemoteMTA)
		}
		kind := "X-Mailroom" // our own finding (DNS, expiry)
		if replyRe.MatchString(rc.Detail) {
			kind = "smtp" // a next hop's reply
		}
		b.WriteString(fold("Diagnostic-Code: "+kind+"; "+oneLine(rc.Detail), " ") + "\r\n")
	}
	b.WriteString("\r\n")
	if full {
		fmt.Fprintf(b, "--%s\r\nContent-Type: %s\r\n%s\r\n", boundary, fullType, cte(r.EightBit || intl))
	} else {
		fmt.Fprintf(b, "--%s\r\nContent-Type: %s\r\n%s\r\n", boundary, headersType, cte(r.EightBit || intl))
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	if err := copyOriginal(w, original, full, r.ReturnLimit); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\r\n--%s--\r\n", boundary)
	return err
}

// cte is the Content-Transfer-Encoding field of a part that may hold 8-bit
// text, or nothing.
func cte(eightBit bool) string {
	if eightBit {
		return "Content-Transfer-Encoding: 8bit\r\n"
	}
	return ""
}

// copyOriginal copies the original message, or its header only; a header
// of more than limit octets (when limit > 0) is cut after its last whole
// line within the limit.
func copyOriginal(w io.Writer, r io.Reader, full bool, limit int64) error {
	if full {
		_, err := io.Copy(w, r)
		return err
	}
	if limit > 0 {
		r = io.LimitReader(r, limit+1) // a huge header is never read whole
	}
	br := bufio.NewReader(r)
	var n int64
	for {
		line, err := br.ReadString('\n')
		n += int64(len(line))
		if strings.TrimRight(line, "\r\n") == "" || limit > 0 && n > limit {
			return nil
		}
		if _, werr := io.WriteString(w, line); werr != nil {
			return werr
		}
		if err != nil {
			if err == io.EOF {
				_, err = io.WriteString(w, "\r\n")
			}
			return err
		}
	}
}

// foldAt is the length lines are folded to where they can be (RFC 5322
// 2.1.1 asks for 78); maxLine is the most any line may have, CRLF aside
// (998).
const (
	foldAt  = 78
	maxLine = 998
)

// fold breaks a long line at spaces into lines of at most foldAt octets
// where it can, never more than maxLine, each continuation starting with
// indent (a header field's folding whitespace, or a text's indentation).
func fold(line, indent string) string {
	line = strings.TrimRight(line, " ")
	var b strings.Builder
	for {
		if len(line) <= foldAt {
			b.WriteString(line)
			return b.String()
		}
		cut := strings.LastIndexByte(line[:foldAt+1], ' ')
		if cut <= len(indent) { // no space early enough: the next one, within maxLine
			if next := strings.IndexByte(line[foldAt:], ' '); next >= 0 && foldAt+next <= maxLine {
				cut = foldAt + next
			} else {
				cut = maxLine
			}
			if cut >= len(line) {
				b.WriteString(line)
				return b.String()
			}
			for cut > foldAt && !utf8.RuneStart(line[cut]) { // not inside a character
				cut--
			}
		}
		b.WriteString(line[:cut])
		rest := strings.TrimLeft(line[cut:], " ")
		if rest == "" {
			return b.String()
		}
		b.WriteString("\r\n")
		line = indent + rest
	}
}

// oneLine makes text from outside (a reply, an ENVID) fit one header line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		// Line ends, and every other control (an ESC from a next hop's
		// reply would reach whoever reads the report in a terminal).
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return ' '
		}
		return r
	}, s)
}
