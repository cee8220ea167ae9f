package downgrade

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mailroom/internal/mapped"
	"mailroom/internal/message"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// ErrHeaders8Bit means a header field, of the message or of any part in it,
// has an octet >= 0x80. Such a message can be sent only to a next hop that
// offers 8BITMIME (or SMTPUTF8, for UTF-8 header fields).
var ErrHeaders8Bit = errors.New("a header field has 8-bit octets")

// ErrHeaderLine means a header line has a NUL, a CR or LF outside CRLF, or
// more than 998 octets (RFC 5322 2.1.1): it cannot be made 7bit data without
// rewriting the field.
var ErrHeaderLine = errors.New("a header line has a NUL, a lone CR or LF, or more than 998 octets")

// maxDepth bounds how deep Convert walks into nested multipart and
// message/rfc822 entities; deeper ones are encoded whole. Real mail seldom
// nests more than a handful of levels, and each level rescans its body.
const maxDepth = 32

// Needed reports whether the message read from r has an octet >= 0x80 or a
// NUL, and so cannot go as it is to a next hop without 8BITMIME. It reads r
// to the end (or to the first such octet) in fixed memory.
func Needed(r io.Reader) (bool, error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c >= 0x80 || c == 0 {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("downgrade: read message: %w", err)
		}
	}
}

// Convert writes the message read from msg (CRLF line endings) to w as 7bit
// data, re-encoding the parts that are not; the package comment says how.
// When msg is an *os.File (a message on disk, as large ones are), it is
// mapped into memory read-only rather than read: its pages belong to the
// page cache, which can drop them, and the heap holds only a few buffers
// whatever the message's size. Any other reader is read whole first.
// Every line written has at most 998 octets and ends in CRLF, save perhaps
// the last: an SMTP client adds the CRLF before the final dot. An error
// wrapping ErrHeaders8Bit or ErrHeaderLine means the message cannot be
// converted (see Permanent); after any error, what was written to w is
// incomplete and must be discarded.
func Convert(w io.Writer, msg io.Reader) error {
	if f, ok := msg.(*os.File); ok {
		data, unmap, err := mapped.File(f)
		if err != nil {
			return fmt.Errorf("downgrade: map message: %w", err)
		}
		defer unmap()
		return convertMapped(w, data)
	}
	data, err := io.ReadAll(msg)
	if err != nil {
		return fmt.Errorf("downgrade: read message: %w", err)
	}
	return convertBytes(w, data)
}

// convertMapped converts a message mapped from a file. A file cut short
// under the mapping faults on access: that becomes an error of this
// conversion, not the end of the process.
func convertMapped(w io.Writer, data []byte) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// A memory fault's panic value has the address (runtime/debug).
			fault, ok := r.(interface{ Addr() uintptr })
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("downgrade: the message file changed while it was read (fault at %#x)", fault.Addr())
		}
	}()
	return convertBytes(w, data)
}

func convertBytes(w io.Writer, data []byte) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	c := converter{w: bw}
	if err := c.entity(data, scope{message: true}); err != nil {
		return fmt.Errorf("downgrade: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("downgrade: write: %w", err)
	}
	return nil
}

// Permanent returns, for an error from Convert that retrying cannot cure,
// the enhanced status code (RFC 3463 X.6.3, conversion required but not
// supported) and sentence to fail the delivery with; ok is false for any
// other error, such as a failure to read or write.
func Permanent(err error) (detail string, ok bool) {
	switch {
	case errors.Is(err, ErrHeaders8Bit):
		return "5.6.3 the next hop does not support 8BITMIME and the message has 8-bit octets in a header field, which cannot be converted", true
	case errors.Is(err, ErrHeaderLine):
		return "5.6.3 the next hop does not support 8BITMIME and the message has a header line that cannot be converted (a NUL, a lone CR or LF, or over 998 octets)", true
	}
	return "", false
}

// converter writes one converted message. Write errors stick in the
// bufio.Writer and are reported by Convert's final Flush.
type converter struct {
	w     *bufio.Writer
	qpCol int // writeQP's column, kept between the pieces of one body
}

// scope says where an entity is, for defaults and error messages.
type scope struct {
	path    string // "" for the message, "1.2" for a part (IMAP numbering)
	message bool   // a message (top level or inside message/rfc822), not a body part
	digest  bool   // a part of multipart/digest, whose default type is message/rfc822
	depth   int    // multipart and message/rfc822 entities around this one
}

func (s scope) String() string {
	switch {
	case s.path == "" && s.depth > 0:
		return "message in the message"
	case s.path == "":
		return "message"
	case s.message:
		return "message in part " + s.path
	}
	return "part " + s.path
}

func (s scope) child(n int) scope {
	p := strconv.Itoa(n)
	if s.path != "" {
		p = s.path + "." + p
	}
	return scope{path: p, depth: s.depth + 1}
}

// entity converts one message or body part: a header block, and a body
// after the empty line that ends it.
func (c *converter) entity(e []byte, s scope) error {
	if is7bit(e) {
		c.w.Write(e)
		return nil
	}
	h, err := parseHeader(e)
	if err != nil {
		return fmt.Errorf("%s header: %w", s, err)
	}
	// The header is 7bit data, so the body is not.
	mt, params := h.contentType(s.digest)
	cte := h.cte()
	encoded := cte == "quoted-printable" || cte == "base64"
	multipart := !encoded && strings.HasPrefix(mt, "multipart/")
	rfc822 := !encoded && mt == "message/rfc822"
	if (multipart || rfc822) && s.depth >= maxDepth {
		c.leaf(h, mt, true, s)
		return nil
	}
	switch {
	case multipart:
		if b, ok := message.Boundary(params["boundary"]); ok {
			if ds := message.FindDelims(h.body, b); len(ds) > 0 {
				return c.multipart(h, b, ds, mt == "multipart/digest", s)
			}
		}
		c.leaf(h, mt, true, s)
	case rfc822:
		c.writeHeader(h, c.containerChanges(h, s))
		inner := scope{path: s.path, message: true, depth: s.depth + 1}
		return c.entity(h.body, inner)
	default:
		c.leaf(h, mt, false, s)
	}
	return nil
}

// leaf writes a body that is not 7bit data as quoted-printable or base64.
// whole is true when the body is a multipart or message/rfc822 that could
// not be walked, and is encoded as text.
func (c *converter) leaf(h *header, mt string, whole bool, s scope) {
	switch h.cte() {
	case "quoted-printable":
		c.writeHeader(h, changes{})
		c.recodeQP(h.body)
		return
	case "base64":
		c.writeHeader(h, changes{})
		c.writeBase64Filtered(h.body)
		return
	}
	var ch changes
	qp := whole || strings.HasPrefix(mt, "text/")
	if _, ok := h.get("content-type"); !ok && !s.digest {
		ch.add = append(ch.add, "Content-Type: text/plain; charset="+charset(h.body))
		qp = true
	}
	ch.cte = "base64"
	if qp {
		ch.cte = "quoted-printable"
	}
	c.writeHeader(h, c.withMIMEVersion(h, ch, s))
	if qp {
		c.qpCol = 0
		c.writeQP(h.body, true)
	} else {
		c.writeBase64(h.body)
	}
}

// changes are what writeHeader does to a header block.
type changes struct {
	cte string   // new value for every Content-Transfer-Encoding field, or ""
	add []string // fields to add at the end, without CRLF
}

// containerChanges marks a multipart or message/rfc822 entity 7bit once its
// contents are converted (RFC 2045 6.4, RFC 2046 5.2.1).
func (c *converter) containerChanges(h *header, s scope) changes {
	if _, ok := h.get("content-transfer-encoding"); !ok || h.cte() == "7bit" {
		return changes{}
	}
	return c.withMIMEVersion(h, changes{cte: "7bit"}, s)
}

// withMIMEVersion adds MIME-Version to the changes of a message's header
// that lacks one, as its MIME fields mean nothing without it (RFC 2045 4).
func (c *converter) withMIMEVersion(h *header, ch changes, s scope) changes {
	if _, ok := h.get("mime-version"); s.message && !ok {
		ch.add = append([]string{"MIME-Version: 1.0"}, ch.add...)
	}
	return ch
}
