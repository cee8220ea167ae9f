package inbound

import (
	"bufio"
	"io"
	"mailroom/internal/message"
	"mailroom/internal/smtp"
	"net/mail"
	"strings"
)

// headerInfo is what delivery needs from the header section.
type headerInfo struct {
	From     string // display form of the first From field, for listings
	Subject  string
	Received int
	// Authors are the values of every From, Sender, Resent-From and
	// Resent-Sender field, whole, for the submission sender check.
	Authors      []authorField
	Froms        int  // number of From fields
	Complete     bool // the end of the header section was reached
	HasMessageID bool
	MessageID    string // its value on the field's first line, for the message log (up to 256 octets)
	HasDate      bool
	TLSOptional  bool // "TLS-Required: No" (RFC 8689 5)
	Lines        int  // of the header section, continuation lines too
	MaxFolds     int  // the most continuation lines of one field
	EightBit     bool // a header line holds an octet over 127 (UTF-8 header fields)
}

// authorField is one header field naming authors or senders.
type authorField struct {
	Name  string // lower case
	Value string
}

// maxHeaderScan bounds how much of a message is read to find its header.
// A header larger than this is not Complete.
const maxHeaderScan = 256 << 10

// maxFieldKept bounds how much of a Subject field is kept for listings;
// author fields are kept whole (within maxHeaderScan).
const maxFieldKept = 2048

// scanHeader reads the header section (RFC 5322 2.2) for the fields
// delivery needs, tolerating malformed input, in linear time.
func scanHeader(r io.Reader) (headerInfo, error) {
	var h headerInfo
	lr := &io.LimitedReader{R: r, N: maxHeaderScan}
	br := bufio.NewReader(lr)
	var name string // of the field being read, lower case; "" if not kept
	var value strings.Builder
	flush := func() {
		v := strings.TrimSpace(value.String())
		switch name {
		case "subject":
			if h.Subject == "" {
				h.Subject = decodeWords(v)
			}
		case "from", "sender", "resent-from", "resent-sender":
			if name == "from" && h.From == "" {
				h.From = decodeFrom(v)
			}
			h.Authors = append(h.Authors, authorField{name, v})
		}
		name = ""
		value.Reset()
	}
	folds := 0
	for {
		line, err := br.ReadString('\n')
		h.Lines++
		h.EightBit = h.EightBit || !smtp.IsASCII(line)
		trimmed := strings.TrimRight(line, "\r\n")
		switch {
		case trimmed == "" && (err == nil || line != ""):
			flush()
			h.Complete = true
			return h, nil
		case trimmed == "":
		case trimmed[0] == ' ' || trimmed[0] == '\t':
			folds++
			h.MaxFolds = max(h.MaxFolds, folds)
			if name != "" && (name != "subject" || value.Len() < maxFieldKept) {
				value.WriteByte(' ')
				value.WriteString(strings.TrimSpace(trimmed))
			}
		default:
			flush()
			folds = 0
			n, v, ok := strings.Cut(trimmed, ":")
			if !ok {
				break
			}
			switch n = strings.ToLower(strings.TrimSpace(n)); n {
			case "received":
				h.Received++
			case "message-id":
				h.HasMessageID = true
				if h.MessageID == "" {
					h.MessageID = truncateRunes(strings.TrimSpace(v), 256)
				}
			case "date":
				h.HasDate = true
			case "tls-required":
				h.TLSOptional = strings.EqualFold(strings.TrimSpace(v), "no")
			case "from", "sender", "resent-from", "resent-sender", "subject":
				if n == "from" {
					h.Froms++
				}
				name = n
				value.WriteString(v)
			}
		}
		if err != nil {
			flush()
			if err == io.EOF {
				// A message that is all header ends the header too,
				// unless the scan limit cut it.
				h.Complete = lr.N > 0
				return h, nil
			}
			return h, err
		}
	}
}

// authorAddresses parses the addresses of an author field; ok is false
// when the field does not parse as an address list.
func authorAddresses(v string) ([]string, bool) {
	list, err := mail.ParseAddressList(v)
	if err != nil || len(list) == 0 {
		return nil, false
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
	}
	return out, true
}

func decodeWords(s string) string {
	return truncateRunes(message.DecodeWords(s), 200)
}

func decodeFrom(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		if a.Name != "" {
			return truncateRunes(a.Name+" <"+a.Address+">", 200)
		}
		return a.Address
	}
	return decodeWords(s)
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}
