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
	From     string
	Subject  string
	Received int
}

// maxHeaderScan bounds how much of a message is read to find its header.
const maxHeaderScan = 256 << 10

var wordDecoder = mime.WordDecoder{}

// scanHeader reads the header section (RFC 5322 2.2) for From, Subject
// and the number of Received fields, tolerating malformed input.
func scanHeader(r io.Reader) (headerInfo, error) {
	var h headerInfo
	br := bufio.NewReader(io.LimitReader(r, maxHeaderScan))
	var field string
	flush := func() {
		name, value, ok := strings.Cut(field, ":")
		if !ok {
			return
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "received":
			h.Received++
		case "from":
			if h.From == "" {
				h.From = decodeFrom(value)
			}
		case "subject":
			if h.Subject == "" {
				h.Subject = decodeWords(value)
			}
		}
	}
	for {
		line, err := br.ReadString('\n')
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			flush()
			return h, nil
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			field += " " + strings.TrimSpace(trimmed)
		} else {
			flush()
			field = trimmed
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
