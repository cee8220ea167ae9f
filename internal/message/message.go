// Package message parses the structure of an Internet message (RFC 5322)
// and its MIME entities (RFC 2045, 2046): where each part's header and body
// lie, its content type and fields, and the envelope of each message (IMAP's
// ENVELOPE: RFC 9051 7.5.2). A summary is computed once, when a message is
// stored, and kept beside it: IMAP's FETCH of ENVELOPE, BODYSTRUCTURE and
// body sections, and SEARCH on addresses and subjects, read it instead of
// parsing the message again.
//
// Parsing never fails: a message that breaks the rules gets the structure a
// lenient reader (Dovecot's, mutt's) would see, and depth and part counts
// are bounded.
package message

import (
	"bytes"
	"fmt"
	"mime"
	"slices"
	"strings"
)

// Part is one entity: the message, a body part of a multipart, or the
// message inside a message/rfc822 part. Offsets count octets from the start
// of the parsed message.
type Part struct {
	Start     int64 `json:"s"`           // the first octet of the header
	BodyStart int64 `json:"b"`           // the first octet of the body, after the empty line
	End       int64 `json:"e"`           // past the last octet of the body
	Lines     int64 `json:"l,omitempty"` // lines of the body (RFC 9051 body-fld-lines)

	Type    string   `json:"t"`           // lower case, "text"
	Subtype string   `json:"u"`           // lower case, "plain"
	Params  []string `json:"p,omitempty"` // name (lower case), value, name, value...

	ID          string   `json:"id,omitempty"`
	Description string   `json:"de,omitempty"`
	Encoding    string   `json:"en,omitempty"` // Content-Transfer-Encoding, upper case; "" for 7BIT
	MD5         string   `json:"md,omitempty"`
	Disposition string   `json:"d,omitempty"` // lower case
	DispParams  []string `json:"dp,omitempty"`
	Language    []string `json:"la,omitempty"`
	Location    string   `json:"lo,omitempty"`

	Parts    []*Part   `json:"c,omitempty"`   // of a multipart
	Message  *Part     `json:"m,omitempty"`   // inside a message/rfc822 (or message/global)
	Envelope *Envelope `json:"env,omitempty"` // of a message: the root, or a Message
}

// Envelope is what IMAP's ENVELOPE shows of a message's header: the field
// values as they are (encoded words not decoded), unfolded.
type Envelope struct {
	Date      string    `json:"date,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	From      []Address `json:"from,omitempty"`
	Sender    []Address `json:"sender,omitempty"`
	ReplyTo   []Address `json:"reply_to,omitempty"`
	To        []Address `json:"to,omitempty"`
	Cc        []Address `json:"cc,omitempty"`
	Bcc       []Address `json:"bcc,omitempty"`
	InReplyTo string    `json:"in_reply_to,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	// References are the message ids of the References field, in order:
	// not part of IMAP's ENVELOPE, but what THREAD=REFERENCES reads.
	References []string `json:"refs,omitempty"`
}

// Address is one address of an address list, or a group's start (Group
// set, the others empty) or end (GroupEnd), as RFC 9051 7.5.2 lists them.
type Address struct {
	Name     string `json:"n,omitempty"`
	Route    string `json:"r,omitempty"` // obsolete source route, "@a,@b"
	Mailbox  string `json:"m,omitempty"`
	Host     string `json:"h,omitempty"`
	Group    string `json:"g,omitempty"`
	GroupEnd bool   `json:"ge,omitempty"`
}

// maxHeader is the largest header section a summary keeps.
const maxHeader = 32 << 10

// summaryVersion changes when the parser's output changes, so that old
// summaries can be recomputed.
const summaryVersion = 5

// Limits of the parser: deeper or more numerous entities are taken as
// opaque leaves.
const (
	maxDepth = 32
	maxParts = 5000
)

// Parse parses a whole message.
func Parse(msg []byte) *Part {
	p := parser{}
	return p.entity(msg, 0, "text", "plain", 0, true)
}

// Encode returns the summary of a parsed message, to be stored.
// header is the message's header section as stored (its first
// root.BodyStart octets), or nil; one over maxHeader is left out.
func Encode(root *Part, header []byte) []byte {
	if len(header) > maxHeader {
		header = nil
	}
	e := encoder{b: make([]byte, 0, 256+len(header))}
	e.b = append(e.b, codecMagic)
	e.uint(summaryVersion)
	e.bool(header != nil)
	if header != nil {
		e.str(string(header))
	}
	e.bool(root.Envelope != nil)
	if root.Envelope != nil {
		e.envelope(root.Envelope)
	}
	e.root(root)
	return e.b
}

// Decode reads a stored summary: the structure and the header section (nil
// when it was not kept, a slice of b); ok is false for one of another
// version or that does not decode, which the caller computes again.
func Decode(b []byte) (*Part, []byte, bool) {
	d, header, ok := decodeHeader(b)
	if !ok {
		return nil, nil, false
	}
	d.s = string(d.b)
	var env *Envelope
	if d.bool() {
		env = d.envelope()
	}
	root := d.part()
	if d.err != nil || d.i != len(d.b) || root.Envelope != nil {
		return nil, nil, false
	}
	root.Envelope = env
	return root, header, true
}

// DecodeEnvelope reads only the root's envelope, what SORT, THREAD and
// SEARCH on addresses, subjects and dates need: much faster than Decode.
// env is nil for a message without one; ok is false as for Decode.
func DecodeEnvelope(b []byte) (env *Envelope, ok bool) {
	d, _, ok := decodeHeader(b)
	if !ok {
		return nil, false
	}
	d.s = string(d.b)
	if d.bool() {
		env = d.envelope()
	}
	if d.err != nil {
		return nil, false
	}
	return env, true
}

// DecodeHeader reads only what FETCH of the message's header fields needs,
// much faster than Decode: the root's offsets (no parts, no envelope) and
// the header section; ok is false as for Decode, or when the header
// section was not kept.
func DecodeHeader(b []byte) (*Part, []byte, bool) {
	d, header, ok := decodeHeader(b)
	if !ok || header == nil {
		return nil, nil, false
	}
	if d.bool() {
		d.skipEnvelope()
	}
	root := &Part{Start: d.int(), BodyStart: d.int(), End: d.int(), Lines: d.int()}
	if d.err != nil {
		return nil, nil, false
	}
	return root, header, true
}

// decodeHeader checks a summary's version and reads its header section,
// leaving d at the root part.
func decodeHeader(b []byte) (d decoder, header []byte, ok bool) {
	if len(b) == 0 || b[0] != codecMagic {
		return d, nil, false
	}
	d = decoder{b: b, i: 1}
	if d.uint() != summaryVersion {
		return d, nil, false
	}
	if d.bool() {
		n := d.count()
		header = b[d.i : d.i+n : d.i+n]
		d.i += n
	}
	if d.err != nil {
		return d, nil, false
	}
	d.b, d.i = d.b[d.i:], 0
	return d, header, true
}

type parser struct {
	parts int
}

// entity parses one entity of b, which starts at offset off of the
// message; defType/defSub is its type without a Content-Type field.
func (p *parser) entity(b []byte, off int64, defType, defSub string, depth int, isMessage bool) *Part {
	p.parts++
	h, bodyStart := splitHeader(b)
	part := &Part{Start: off, BodyStart: off + int64(bodyStart), End: off + int64(len(b))}
	body := b[bodyStart:]
	part.Type, part.Subtype, part.Params = contentType(h, defType, defSub)
	part.ID = h.get("content-id")
	part.Description = h.get("content-description")
	part.Encoding = strings.ToUpper(strings.TrimSpace(h.get("content-transfer-encoding")))
	if part.Encoding == "7BIT" {
		part.Encoding = ""
	}
	part.MD5 = h.get("content-md5")
	if v := h.get("content-disposition"); v != "" {
		d, params, err := mime.ParseMediaType(v)
		if err == nil || err == mime.ErrInvalidMediaParameter {
			part.Disposition, part.DispParams = d, sortedParams(params)
		}
	}
	if v := h.get("content-language"); v != "" {
		part.Language = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	}
	part.Location = h.get("content-location")
	if isMessage {
		part.Envelope = envelope(h)
	}
	opaque := depth >= maxDepth || p.parts >= maxParts || (part.Encoding != "" && part.Encoding != "8BIT" && part.Encoding != "BINARY")
	switch {
	case part.Type == "multipart" && !opaque:
		boundary, ok := Boundary(paramValue(part.Params, "boundary"))
		if !ok {
			break
		}
		ds := FindDelims(body, boundary)
		childType, childSub := "text", "plain"
		if part.Subtype == "digest" {
			childType, childSub = "message", "rfc822"
		}
		for i, d := range ds {
			if d.Close {
				break
			}
			end := len(body)
			if i+1 < len(ds) {
				end = ds[i+1].Start - 2 // the CRLF before a delimiter belongs to it
				if end < d.End {
					end = d.End
				}
			}
			part.Parts = append(part.Parts, p.entity(body[d.End:end], part.BodyStart+int64(d.End), childType, childSub, depth+1, false))
			if p.parts >= maxParts {
				break
			}
		}
	case part.Type == "message" && (part.Subtype == "rfc822" || part.Subtype == "global") && !opaque:
		part.Message = p.entity(body, part.BodyStart, "text", "plain", depth+1, true)
	}
	if part.Type == "text" || part.Message != nil || (part.Type == "message" && part.Subtype == "rfc822") {
		part.Lines = int64(bytes.Count(body, []byte("\n")))
		if len(body) > 0 && body[len(body)-1] != '\n' {
			part.Lines++
		}
	}
	return part
}

// contentType returns the media type and sorted parameters of a header,
// or the default when it has none or one that does not parse (RFC 2045
// 5.2: text/plain; charset=us-ascii).
func contentType(h header, defType, defSub string) (string, string, []string) {
	v := h.get("content-type")
	if v != "" {
		mt, params, err := mime.ParseMediaType(v)
		if t, sub, ok := strings.Cut(mt, "/"); ok && t != "" && sub != "" && (err == nil || err == mime.ErrInvalidMediaParameter) {
			return t, sub, sortedParams(params)
		}
	}
	if defType == "text" {
		return defType, defSub, []string{"charset", "us-ascii"}
	}
	return defType, defSub, nil
}

func sortedParams(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]string, 0, 2*len(names))
	for _, k := range names {
		out = append(out, k, m[k])
	}
	return out
}

func paramValue(params []string, name string) string {
	for i := 0; i+1 < len(params); i += 2 {
		if params[i] == name {
			return params[i+1]
		}
	}
	return ""
}

// Section returns the part a section number ("1.2", as in BODY[1.2])
// names, following IMAP's rules (RFC 9051 6.4.5): in a message whose body
// is not multipart, part 1 is the body itself; the parts of a
// message/rfc822 part are those of the message inside.
func (part *Part) Section(nums []int) (*Part, error) {
	cur, isMessage := part, true
	for i, n := range nums {
		if i > 0 && cur.Message != nil {
			cur, isMessage = cur.Message, true
		}
		switch {
		case len(cur.Parts) > 0:
			if n < 1 || n > len(cur.Parts) {
				return nil, fmt.Errorf("there is no part %d", n)
			}
			cur, isMessage = cur.Parts[n-1], false
		case n == 1 && isMessage:
			isMessage = false // a message's only part: its body
		default:
			return nil, fmt.Errorf("there is no part %d", n)
		}
	}
	return cur, nil
}

// Prefixed adjusts the structure of a message parsed without the n octets
// of header fields written in front of it when it was stored (a Received
// field, a copy's Return-Path and Delivered-To): every offset moves by n,
// and the header still starts at 0.
func (part *Part) Prefixed(n int64) {
	part.shift(n)
	part.Start = 0
}

func (part *Part) shift(n int64) {
	part.Start += n
	part.BodyStart += n
	part.End += n
	for _, c := range part.Parts {
		c.shift(n)
	}
	if part.Message != nil {
		part.Message.shift(n)
	}
}
