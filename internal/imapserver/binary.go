package imapserver

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
)

// parseBinarySection reads the part number of BINARY[...] (RFC 3516),
// which names no HEADER, TEXT or MIME, and its partial.
func parseBinarySection(p *imapwire.Parser, it fetchItem, prefix string) (fetchItem, error) {
	var label strings.Builder
	label.WriteString(prefix)
	for i := 0; ; i++ {
		if c := p.Peek(); c < '0' || c > '9' {
			if i > 0 {
				return it, bad("BINARY takes part numbers only")
			}
			break
		}
		n, err := p.Number()
		if err != nil || n == 0 {
			return it, bad("Section part numbers start at 1")
		}
		it.section = append(it.section, int(n))
		if i > 0 {
			label.WriteByte('.')
		}
		fmt.Fprintf(&label, "%d", n)
		if !p.Take(".") {
			break
		}
	}
	if err := p.Expect("]"); err != nil {
		return it, err
	}
	label.WriteByte(']')
	if it.name == "BINARY" && p.Take("<") {
		start, err := p.Number()
		if err != nil {
			return it, err
		}
		if err := p.Expect("."); err != nil {
			return it, err
		}
		length, err := p.Number()
		if err != nil || length == 0 {
			return it, bad("A partial fetch needs a length above 0")
		}
		if err := p.Expect(">"); err != nil {
			return it, err
		}
		it.partial, it.start, it.length = true, int64(start), int64(length)
		fmt.Fprintf(&label, "<%d>", start)
	}
	it.label = label.String()
	return it, nil
}

// binarySection returns a section with its content transfer encoding
// undone (RFC 3516 4.2), and whether it must go as a literal8 (it holds a
// NUL). A whole message, or a message/rfc822 part, goes as it is.
func (s *session) binarySection(info *fetchInfo, raw []byte, root *message.Part, it fetchItem) ([]byte, bool, error) {
	start, end, _, ok := sectionRange(root, fetchItem{section: it.section})
	if !ok {
		return nil, false, nil
	}
	data, err := s.section(info, raw, start, end)
	if err != nil {
		return nil, false, err
	}
	if len(it.section) > 0 {
		part, _ := root.Section(it.section)
		if len(part.Parts) == 0 && part.Message == nil {
			r, known := message.DecodeTransfer(bytes.NewReader(data), part.Encoding)
			if !known {
				return nil, false, no("[UNKNOWN-CTE]", "Part %s has a content transfer encoding this server cannot decode: %s", setNumbers(it.section), clipName(part.Encoding))
			}
			if r != nil {
				if data, err = io.ReadAll(r); err != nil {
					return nil, false, no("[PARSE]", "Part %s is not valid %s", setNumbers(it.section), strings.ToLower(part.Encoding))
				}
			}
		}
	}
	return data, bytes.IndexByte(data, 0) >= 0, nil
}

func setNumbers(nums []int) string {
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ".")
}
