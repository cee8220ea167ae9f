// Package arf reads abuse feedback reports (ARF, RFC 5965): the reports a
// mailbox provider sends back when one of its users marks a message as
// spam. A report is a multipart/report of report-type feedback-report: a
// human-readable part, a message/feedback-report part (the type of
// feedback, the original recipient when the provider says it), and the
// original message or its header.
package arf

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
)

// Report is what a feedback report says.
type Report struct {
	FeedbackType     string // abuse, fraud, virus, other, not-spam...
	UserAgent        string
	ReportingMTA     string
	SourceIP         string
	OriginalMailFrom string
	// OriginalRcptTo are the recipients the report is about (addresses,
	// without brackets); providers that redact them leave it empty.
	OriginalRcptTo []string
	// Original is the header of the message reported.
	Original mail.Header
}

// ErrNotARF is the error of a message that is not a feedback report.
var ErrNotARF = errors.New("not an abuse feedback report (RFC 5965)")

// maxPart bounds what is read of each part.
const maxPart = 1 << 20

// Parse reads a feedback report.
func Parse(r io.Reader) (*Report, error) {
	m, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(r, 8*maxPart)))
	if err != nil {
		return nil, ErrNotARF
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || !strings.EqualFold(params["report-type"], "feedback-report") || params["boundary"] == "" {
		return nil, ErrNotARF
	}
	rep := &Report{}
	found := false
	mr := multipart.NewReader(m.Body, params["boundary"])
	for i := 0; i < 10; i++ {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		data, err := io.ReadAll(io.LimitReader(p, maxPart))
		if err != nil {
			return nil, ErrNotARF
		}
		switch pt {
		case "message/feedback-report":
			if err := rep.fields(data); err != nil {
				return nil, err
			}
			found = true
		case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers":
			if h, err := readHeader(data); err == nil {
				rep.Original = h
			}
		}
	}
	if !found || rep.FeedbackType == "" {
		return nil, ErrNotARF
	}
	return rep, nil
}

// fields reads the machine-readable part (RFC 5965 3.5): header fields.
func (rep *Report) fields(data []byte) error {
	h, err := readHeader(data)
	if err != nil {
		return ErrNotARF
	}
	rep.FeedbackType = strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))
	rep.UserAgent = h.Get("User-Agent")
	rep.ReportingMTA = h.Get("Reporting-MTA")
	rep.SourceIP = h.Get("Source-IP")
	rep.OriginalMailFrom = strings.Trim(strings.TrimSpace(h.Get("Original-Mail-From")), "<>")
	for _, v := range h["Original-Rcpt-To"] {
		if a := strings.Trim(strings.TrimSpace(v), "<>"); a != "" {
			rep.OriginalRcptTo = append(rep.OriginalRcptTo, strings.ToLower(a))
		}
	}
	return nil
}

// readHeader reads a header section (the whole of data, or up to its
// blank line).
func readHeader(data []byte) (mail.Header, error) {
	data = bytes.TrimLeft(data, "\r\n")
	if !bytes.Contains(data, []byte("\n\n")) && !bytes.Contains(data, []byte("\r\n\r\n")) {
		data = append(bytes.TrimRight(data, "\r\n"), "\r\n\r\n"...)
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(data))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return nil, err
	}
	return mail.Header(h), nil
}

// QueueIDs are the queue IDs the original message's Received fields give
// for a server named host ("by HOST (Mailroom) ... id QUEUEID"): how a
// report finds the message Mailroom sent.
func (rep *Report) QueueIDs(host string) []string {
	var out []string
	for _, v := range rep.Original["Received"] {
		f := strings.Fields(strings.ToLower(v))
		byUs := false
		for i := 0; i+1 < len(f); i++ {
			switch {
			case f[i] == "by" && strings.EqualFold(f[i+1], host):
				byUs = true
			case f[i] == "id" && byUs:
				out = append(out, strings.TrimRight(strings.Fields(v)[i+1], ";"))
			}
		}
	}
	return out
}
