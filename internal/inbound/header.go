package inbound

import (
	"bufio"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// headerInfo is what delivery needs from the header section.
type headerInfo struct {
	From     string // display form of the first From field
	Subject  string
	Received int
	// FromAddrs are the addresses of the first From field, for the
	// submission sender check; FromRaw is that field's value.
	FromAddrs    []string
	FromRaw      string
	HasMessageID bool
	HasDate      bool
}

// maxHeaderScan bounds how much of a message is read to find its header.
const maxHeaderScan = 256 << 10

var wordDecoder = mime.WordDecoder{}

// maxFieldKept bounds how much of one From or Subject field is kept.
const maxFieldKept = 2048

// scanHeader reads the header section (RFC 5322 2.2) for From, Subject
// and the number of Received fields, tolerating malformed input. Only the
// fields it needs are buffered, each up to maxFieldKept octets, so that a
// header of many folded lines costs linear time.
func scanHeader(r io.Reader) (headerInfo, error) {
	var h headerInfo
	br := bufio.NewReader(io.LimitReader(r, maxHeaderScan))
	var name string // of the field being read, lower case
	var value strings.Builder
	flush := func() {
		v := strings.TrimSpace(value.String())
		switch name {
		case "from":
			if h.FromRaw == "" {
				h.FromRaw = v
				h.From = decodeFrom(v)
				if list, err := mail.ParseAddressList(v); err == nil {
					for _, a := range list {
						h.FromAddrs = append(h.FromAddrs, a.Address)
					}
				}
			}
		case "subject":
			if h.Subject == "" {
				h.Subject = decodeWords(v)
			}
		}
		name = ""
		value.Reset()
	}
	for {
		line, err := br.ReadString('\n')
		trimmed := strings.TrimRight(line, "\r\n")
		switch {
		case trimmed == "":
			flush()
			return h, nil
		case trimmed[0] == ' ' || trimmed[0] == '\t':
			if name != "" && value.Len() < maxFieldKept {
				value.WriteByte(' ')
				value.WriteString(strings.TrimSpace(trimmed))
			}
		default:
			flush()
			n, v, ok := strings.Cut(trimmed, ":")
			if !ok {
				break
			}
			switch n = strings.ToLower(strings.TrimSpace(n)); n {
			case "received":
				h.Received++
			case "message-id":
				h.HasMessageID = true
			case "date":
				h.HasDate = true
			case "from", "subject":
				name = n
				value.WriteString(v)
			}
		}
		if err != nil {
			flush()
			if err == io.EOF {
				return h, nil
			}
			return h, err
		}
	}
}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return truncateRunes(d, 200)
	}
	return truncateRunes(s, 200)
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
