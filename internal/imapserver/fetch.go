package imapserver

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
	"mailroom/internal/store"
)

func init() {
	commands["FETCH"] = command{states: stateSelected, run: cmdFetch, noExpunge: true}
	commands["UID FETCH"] = command{states: stateSelected, run: cmdFetch}
}

// fetchItem is one data item of FETCH.
type fetchItem struct {
	name    string // UID, FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY, MODSEQ, or SECTION
	peek    bool
	section []int
	spec    string // "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
	fields  []string
	partial bool
	start   int64
	length  int64
	label   string // as written in the response
}

func (it fetchItem) needsBody() bool {
	return it.name == "SECTION" || it.name == "BINARY" || it.name == "BINARY.SIZE"
}
func (it fetchItem) needsInfo() bool {
	return it.name != "UID" && it.name != "FLAGS" && it.name != "MODSEQ"
}
func (it fetchItem) setsSeen() bool {
	return (it.name == "SECTION" || it.name == "BINARY") && !it.peek
}

func cmdFetch(s *session, name string, p *imapwire.Parser) error {
	byUID := name == "UID FETCH"
	if err := p.SP(); err != nil {
		return err
	}
	set, err := p.SeqSet()
	if err != nil {
		return err
	}
	if err := p.SP(); err != nil {
		return err
	}
	items, err := parseFetchItems(p)
	if err != nil {
		return err
	}
	// RFC 7162 3.1.4.1 and 3.2.6: (CHANGEDSINCE n [VANISHED]).
	var changedSince int64
	vanished := false
	if p.Take(" (") {
		for i := 0; !p.Take(")"); i++ {
			if i > 0 {
				if err := p.SP(); err != nil {
					return err
				}
			}
			switch {
			case p.Take("CHANGEDSINCE "):
				if changedSince, err = p.Number64(); err != nil {
					return err
				}
			case p.Take("VANISHED"):
				vanished = true
			default:
				return bad("Unknown FETCH modifier")
			}
		}
		if changedSince == 0 {
			return bad("FETCH modifiers need CHANGEDSINCE with a MODSEQ above 0")
		}
		if vanished && (!byUID || !s.qresync) {
			return bad("VANISHED needs UID FETCH and ENABLE QRESYNC (RFC 7162 3.2.6)")
		}
		s.enableCondstore()
	}
	if err := p.End(); err != nil {
		return err
	}
	if slices.ContainsFunc(items, func(it fetchItem) bool { return it.name == "MODSEQ" }) {
		s.enableCondstore()
	}
	if s.condstore && !slices.ContainsFunc(items, func(it fetchItem) bool { return it.name == "MODSEQ" }) {
		items = append(items, fetchItem{name: "MODSEQ", label: "MODSEQ"})
	}
	if byUID && !slices.ContainsFunc(items, func(it fetchItem) bool { return it.name == "UID" }) {
		items = append([]fetchItem{{name: "UID", label: "UID"}}, items...)
	}
	idx, err := s.resolve(set, byUID)
	if err != nil {
		return err
	}
	if vanished {
		if err := s.vanishedEarlier(set, changedSince); err != nil {
			return err
		}
	}
	if changedSince > 0 {
		idx = slices.DeleteFunc(idx, func(i int) bool { return s.sel.msgs[i].ModSeq <= changedSince })
	}
	return s.fetch(idx, items)
}

// vanishedEarlier reports the UIDs of a set expunged after a MODSEQ
// (RFC 7162 3.2.6, 3.2.5.2).
func (s *session) vanishedEarlier(set imapwire.SeqSet, since int64) error {
	ch, err := s.srv.store.Changes(s.ctx(), s.user.ID, s.sel.name, since)
	if err != nil {
		return err
	}
	r := set.Resolve(ch.UIDNext - 1)
	var uids []uint32
	for _, u := range ch.Vanished {
		if r.Contains(u) {
			uids = append(uids, u)
		}
	}
	if len(uids) > 0 {
		s.untagged("VANISHED (EARLIER) %s", imapwire.Compact(uids))
	}
	return nil
}

// parseFetchItems reads a macro, one item, or a parenthesized list.
func parseFetchItems(p *imapwire.Parser) ([]fetchItem, error) {
	for macro, list := range map[string][]string{
		"ALL":  {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"},
		"FAST": {"FLAGS", "INTERNALDATE", "RFC822.SIZE"},
		"FULL": {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"},
	} {
		if p.Take(macro) {
			var items []fetchItem
			for _, n := range list {
				items = append(items, fetchItem{name: n, label: n})
			}
			return items, nil
		}
	}
	if !p.Take("(") {
		it, err := parseFetchItem(p)
		return []fetchItem{it}, err
	}
	var items []fetchItem
	for !p.Take(")") {
		if len(items) > 0 {
			if err := p.SP(); err != nil {
				return nil, err
			}
		}
		it, err := parseFetchItem(p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
		if len(items) > 100 {
			return nil, bad("Too many FETCH items")
		}
	}
	return items, nil
}

func parseFetchItem(p *imapwire.Parser) (fetchItem, error) {
	switch {
	case p.Take("BINARY.PEEK["):
		return parseBinarySection(p, fetchItem{name: "BINARY", peek: true}, "BINARY[")
	case p.Take("BINARY.SIZE["):
		return parseBinarySection(p, fetchItem{name: "BINARY.SIZE"}, "BINARY.SIZE[")
	case p.Take("BINARY["):
		return parseBinarySection(p, fetchItem{name: "BINARY"}, "BINARY[")
	case p.Take("BODY.PEEK["):
		return parseSection(p, fetchItem{name: "SECTION", peek: true})
	case p.Take("BODY["):
		return parseSection(p, fetchItem{name: "SECTION"})
	case p.Take("BODYSTRUCTURE"):
		return fetchItem{name: "BODYSTRUCTURE", label: "BODYSTRUCTURE"}, nil
	case p.Take("RFC822.HEADER"):
		return fetchItem{name: "SECTION", peek: true, spec: "HEADER", label: "RFC822.HEADER"}, nil
	case p.Take("RFC822.TEXT"):
		return fetchItem{name: "SECTION", spec: "TEXT", label: "RFC822.TEXT"}, nil
	case p.Take("RFC822.SIZE"):
		return fetchItem{name: "RFC822.SIZE", label: "RFC822.SIZE"}, nil
	case p.Take("RFC822"):
		return fetchItem{name: "SECTION", label: "RFC822"}, nil
	case p.Take("BODY"):
		return fetchItem{name: "BODY", label: "BODY"}, nil
	}
	a, err := p.Atom()
	if err != nil {
		return fetchItem{}, bad("Expected a FETCH item")
	}
	switch n := strings.ToUpper(a); n {
	case "UID", "FLAGS", "INTERNALDATE", "ENVELOPE", "MODSEQ":
		return fetchItem{name: n, label: n}, nil
	}
	return fetchItem{}, bad("Unknown FETCH item %s", clipName(a))
}

// parseSection reads a section spec after "BODY[" and the partial.
func parseSection(p *imapwire.Parser, it fetchItem) (fetchItem, error) {
	var label strings.Builder
	label.WriteString("BODY[")
	for {
		if c := p.Peek(); c < '0' || c > '9' {
			break
		}
		n, err := p.Number()
		if err != nil || n == 0 {
			return it, bad("Section part numbers start at 1")
		}
		it.section = append(it.section, int(n))
		fmt.Fprintf(&label, "%d", n)
		if !p.Take(".") {
			break
		}
		label.WriteByte('.')
	}
	for _, spec := range []string{"HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME"} {
		if p.Take(spec) {
			it.spec = spec
			label.WriteString(spec)
			break
		}
	}
	if it.spec == "MIME" && len(it.section) == 0 {
		return it, bad("MIME needs a part number")
	}
	if strings.HasPrefix(it.spec, "HEADER.FIELDS") {
		if err := p.Expect(" ("); err != nil {
			return it, err
		}
		label.WriteString(" (")
		for i := 0; !p.Take(")"); i++ {
			if i > 0 {
				if err := p.SP(); err != nil {
					return it, err
				}
				label.WriteByte(' ')
			}
			f, err := p.AString()
			if err != nil {
				return it, err
			}
			it.fields = append(it.fields, strings.ToLower(f))
			label.WriteString(strings.ToUpper(f))
		}
		label.WriteByte(')')
		if len(it.fields) == 0 {
			return it, bad("HEADER.FIELDS needs at least one field name")
		}
	}
	if err := p.Expect("]"); err != nil {
		return it, err
	}
	label.WriteByte(']')
	if p.Take("<") {
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

// fetch writes the FETCH responses of the messages at idx.
func (s *session) fetch(idx []int, items []fetchItem) error {
	sel := s.sel
	var needInfo, needBody, seen bool
	for _, it := range items {
		needInfo = needInfo || it.needsInfo()
		needBody = needBody || it.needsBody()
		seen = seen || (it.setsSeen() && !sel.readOnly)
	}
	// Reading a body sets \Seen (RFC 9051 6.4.5), before the responses,
	// so that they show it.
	flagsChanged := map[uint32]bool{}
	if seen {
		var uids []uint32
		for _, i := range idx {
			if !sel.has(sel.msgs[i], store.FlagSeen) {
				uids = append(uids, sel.msgs[i].UID)
			}
		}
		if len(uids) > 0 {
			res, err := s.srv.store.SetFlags(s.ctx(), s.user.ID, sel.name, store.FlagChange{UIDs: uids, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}})
			if err != nil {
				return err
			}
			s.applyOwnFlags(res.Changed)
			for _, m := range res.Changed {
				flagsChanged[m.UID] = true
			}
		}
	}
	var infos []*fetchInfo
	if needInfo {
		uids := make([]uint32, len(idx))
		for k, i := range idx {
			uids[k] = sel.msgs[i].UID
		}
		var err error
		if infos, err = s.infosOf(uids); err != nil {
			return err
		}
	}
	defer func() {
		if cap(s.line)+cap(s.scratch) > 64<<10 {
			s.line, s.scratch = nil, nil
		}
	}()
	if len(idx) > 16 {
		defer s.bigWrites()()
	}
	plan := planFetch(items, needBody)
	for k, i := range idx {
		m := sel.msgs[i]
		var in *fetchInfo
		if needInfo {
			if in = infos[k]; in == nil {
				continue // expunged by another session meanwhile
			}
		}
		if err := s.fetchOne(i+1, sel.state(m), in, plan, len(flagsChanged) > 0 && flagsChanged[m.UID]); err != nil {
			return err
		}
	}
	return nil
}

// bigWriters are the write buffers of large responses, shared by the
// sessions: a session's own is small (4 KiB, kept while idle), and a
// FETCH of 1,000 messages written through it cost a TLS record and a
// system call per 4 KiB (a third of the FETCH's time).
var bigWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// bigWrites writes the session's responses through a buffer of the size
// of a TLS record until the function it returns is called.
func (s *session) bigWrites() func() {
	small := s.w
	big := bigWriters.Get().(*bufio.Writer)
	big.Reset(small)
	s.w = big
	return func() {
		big.Flush() // an error stays with small, which the session checks
		big.Reset(nil)
		bigWriters.Put(big)
		s.w = small
	}
}

// fetchOne writes one message's FETCH response.
func (s *session) fetchOne(seq int, m store.MessageState, info *fetchInfo, plan *fetchPlan, addFlags bool) error {
	var raw []byte
	var root *message.Part
	items, needBody, needStructure, headerOnly := plan.items, plan.needBody, plan.needStructure, plan.headerOnly
	if needBody || needStructure {
		// A message over streamLimit with a summary is never read whole:
		// its sections are copied from the store as they are sent.
		withBody := needBody && !headerOnly && (info.Size <= streamLimit || len(info.Summary) == 0)
		var err error
		if root, raw, err = s.structure(info, withBody, headerOnly, needStructure); err != nil {
			return err
		}
	}
	b := append(s.line[:0], "* "...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, " FETCH ("...)
	wroteFlags := false
	for k, it := range items {
		if k > 0 {
			b = append(b, ' ')
		}
		b = append(b, it.label...)
		b = append(b, ' ')
		switch it.name {
		case "UID":
			b = strconv.AppendUint(b, uint64(m.UID), 10)
		case "FLAGS":
			b = append(b, '(')
			b = s.appendFlags(b, m)
			b = append(b, ')')
			wroteFlags = true
		case "MODSEQ":
			b = append(b, '(')
			b = strconv.AppendInt(b, m.ModSeq, 10)
			b = append(b, ')')
		case "INTERNALDATE":
			b = append(b, '"')
			b = append(b, info.Date.Format("02-Jan-2006 15:04:05 -0700")...)
			b = append(b, '"')
		case "RFC822.SIZE":
			b = strconv.AppendInt(b, info.Size, 10)
		case "ENVELOPE":
			b = s.envelope(b, root.Envelope)
		case "BODYSTRUCTURE":
			b = s.bodyStructure(b, root, true)
		case "BODY":
			b = s.bodyStructure(b, root, false)
		case "BINARY", "BINARY.SIZE":
			data, binary, err := s.binarySection(info, raw, root, it)
			if err != nil {
				return err
			}
			if it.name == "BINARY.SIZE" {
				b = strconv.AppendInt(b, int64(len(data)), 10)
				break
			}
			if it.partial {
				ps, pe := partial(it, 0, int64(len(data)))
				data = data[ps:pe]
			}
			b = imapwire.AppendLiteralHeader(b, int64(len(data)), binary)
			b = append(b, data...)
		case "SECTION":
			start, end, fields, ok := sectionRange(root, it)
			var data []byte
			switch {
			case !ok:
			case fields:
				h, err := s.section(info, raw, start, end)
				if err != nil {
					return err
				}
				s.scratch = headerFields(s.scratch[:0], h, it.fields, it.spec == "HEADER.FIELDS.NOT")
				data = s.scratch
				if it.partial {
					ps, pe := partial(it, 0, int64(len(data)))
					data = data[ps:pe]
				}
			case raw != nil:
				start, end = partial(it, min(start, int64(len(raw))), min(end, int64(len(raw))))
				data = raw[start:end]
			default:
				// A large message: its section goes from the store to the
				// client without being held.
				start, end = partial(it, start, end)
				b = imapwire.AppendLiteralHeader(b, end-start, false)
				if _, err := s.w.Write(b); err != nil {
					return err
				}
				b = b[:0]
				if err := s.copySection(info, start, end); err != nil {
					return err
				}
				continue
			}
			b = imapwire.AppendLiteralHeader(b, int64(len(data)), false)
			b = append(b, data...)
		}
	}
	if addFlags && !wroteFlags {
		b = append(b, " FLAGS ("...)
		b = s.appendFlags(b, m)
		b = append(b, ')')
	}
	b = append(b, ")\r\n"...)
	_, err := s.w.Write(b)
	s.line = b[:0]
	return err
}

// fetchPlan is what a FETCH's items need, worked out once for all its
// messages.
type fetchPlan struct {
	items                   []fetchItem
	needBody, needStructure bool
	headerOnly              bool // every item that reads the message reads its header section only
}

func planFetch(items []fetchItem, needBody bool) *fetchPlan {
	return &fetchPlan{items: items, needBody: needBody, headerOnly: needBody && headerItems(items),
		needStructure: slices.ContainsFunc(items, func(it fetchItem) bool {
			return it.name == "ENVELOPE" || it.name == "BODY" || it.name == "BODYSTRUCTURE"
		})}
}

// streamLimit is the largest message FETCH reads whole to send its
// sections; larger ones are sent section by section from the store.
const streamLimit = 256 << 10

// section returns octets [start, end) of a message: from raw when it was
// read, else from the store (header sections only: bounded by the header).
func (s *session) section(info *fetchInfo, raw []byte, start, end int64) ([]byte, error) {
	if raw != nil {
		return raw[min(start, int64(len(raw))):min(end, int64(len(raw)))], nil
	}
	var buf bytes.Buffer
	err := s.copyRange(info, start, min(end, start+s.cfg.MaxMessageSize), &buf)
	return buf.Bytes(), err
}

// copySection sends octets [start, end) of a stored message to the client.
func (s *session) copySection(info *fetchInfo, start, end int64) error {
	return s.copyRange(info, start, end, s.w)
}

// copyRange copies octets [start, end) of a stored message to w; a message
// shorter than its summary says is padded, so the literal keeps its length.
func (s *session) copyRange(info *fetchInfo, start, end int64, w io.Writer) error {
	rc, _, err := s.srv.store.OpenMessage(s.ctx(), s.user.ID, s.sel.name, info.UID)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, start); err != nil && err != io.EOF {
		return err
	}
	n, err := io.CopyN(w, rc, end-start)
	if err != nil && err != io.EOF {
		return err
	}
	if n < end-start {
		_, err = w.Write(bytes.Repeat([]byte{' '}, int(end-start-n)))
	}
	return err
}

// structure returns a message's parsed structure, offsets counted in the
// message as the client sees it (prefix included), and the message itself
// when withBody, or only its header section when headerOnly and the
// summary kept it (then only the root's offsets unless needStructure). A message stored without a summary, or with one an
// older parser made, is parsed now and its summary saved.
func (s *session) structure(info *fetchInfo, withBody, headerOnly, needStructure bool) (*message.Part, []byte, error) {
	if headerOnly && !needStructure && info.head != nil {
		// The message's header fields alone (a client listing its mail):
		// the root's offsets are enough. Both are shared: read only.
		return info.head, info.header, nil
	}
	root, header, ok := message.Decode(info.Summary)
	if ok && !withBody {
		root.Prefixed(int64(info.PrefixSize))
		if headerOnly && header != nil {
			return root, info.header, nil // newInfo decoded the same header
		}
		if !headerOnly {
			return root, nil, nil
		}
	}
	// Read into one buffer of the message's size (growing it as ReadAll
	// does cost a third of SEARCH BODY's time).
	buf := bytes.NewBuffer(make([]byte, 0, min(info.Size, s.cfg.MaxMessageSize*2)+bytes.MinRead))
	found := false
	err := s.srv.store.ReadMessages(s.ctx(), s.user.ID, s.sel.name, []uint32{info.UID}, func(_ uint32, r io.Reader) error {
		found = true
		_, err := buf.ReadFrom(io.LimitReader(r, s.cfg.MaxMessageSize*2))
		return err
	})
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read message %d: %w", info.UID, err)
	}
	raw := buf.Bytes()
	if !ok {
		return s.parseStructure(info, raw), raw, nil
	}
	root.Prefixed(int64(info.PrefixSize))
	return root, raw, nil
}

// decodeStructure returns a message's structure from its summary, offsets
// counted in the message as the client sees it; nil without a summary (or
// with one an older parser made).
func (s *session) decodeStructure(info *fetchInfo) *message.Part {
	root, _, ok := message.Decode(info.Summary)
	if !ok {
		return nil
	}
	root.Prefixed(int64(info.PrefixSize))
	return root
}

// parseStructure parses a message read whole (raw, prefix included) that
// has no summary, and saves its summary.
func (s *session) parseStructure(info *fetchInfo, raw []byte) *message.Part {
	body := raw[min(info.PrefixSize, len(raw)):]
	root := message.Parse(body)
	if err := s.srv.store.SaveSummary(s.ctx(), s.user.ID, s.sel.name, info.UID, message.Encode(root, body[:root.BodyStart])); err != nil {
		s.log.Warn("imap: saving a message's summary", "uid", info.UID, "err", err)
	}
	root.Prefixed(int64(info.PrefixSize))
	return root
}

// headerItems reports whether every item that reads the message reads
// only the message's header section (a client listing its mail).
func headerItems(items []fetchItem) bool {
	for _, it := range items {
		if it.needsBody() && (it.name != "SECTION" || len(it.section) > 0 || !strings.HasPrefix(it.spec, "HEADER")) {
			return false
		}
	}
	return true
}

// sectionRange says where a body section lies in the message (RFC 9051
// 6.4.5): [start, end), and whether only some header fields of it are
// wanted (HEADER.FIELDS); ok is false for a section the message does not
// have (it is sent empty).
func sectionRange(root *message.Part, it fetchItem) (start, end int64, fields, ok bool) {
	part := root
	if len(it.section) > 0 {
		var err error
		if part, err = root.Section(it.section); err != nil {
			return 0, 0, false, false
		}
	}
	msg := part // the message whose HEADER or TEXT is meant
	if len(it.section) > 0 && it.spec != "MIME" && it.spec != "" {
		if part.Message == nil {
			return 0, 0, false, false
		}
		msg = part.Message
	}
	switch it.spec {
	case "":
		if len(it.section) == 0 {
			return 0, root.End, false, true
		}
		return part.BodyStart, part.End, false, true
	case "MIME":
		return part.Start, part.BodyStart, false, true
	case "TEXT":
		return msg.BodyStart, msg.End, false, true
	case "HEADER":
		return msg.Start, msg.BodyStart, false, true
	}
	return msg.Start, msg.BodyStart, true, true
}

// partial narrows a section's range to a partial fetch's <start.length>.
func partial(it fetchItem, start, end int64) (int64, int64) {
	if !it.partial {
		return start, end
	}
	s := min(start+it.start, end)
	return s, min(s+it.length, end)
}

// headerFields appends to dst the fields of a header section named (or,
// with not, not named) in fields, and the empty line. Names compare
// without regard to ASCII case.
func headerFields(dst, h []byte, fields []string, not bool) []byte {
	keep := false
	for len(h) > 0 {
		end := bytes.IndexByte(h, '\n') + 1
		if end == 0 {
			end = len(h)
		}
		line := h[:end]
		h = h[end:]
		if len(line) <= 2 && (line[0] == '\n' || line[0] == '\r') {
			break // the empty line
		}
		if line[0] != ' ' && line[0] != '\t' {
			name := line
			if i := bytes.IndexByte(line, ':'); i >= 0 {
				name = line[:i]
			}
			keep = namedIn(bytes.TrimSpace(name), fields) != not
		}
		if keep {
			dst = append(dst, line...)
		}
	}
	return append(dst, "\r\n"...)
}

// namedIn reports whether a field name is one of names, ASCII case
// ignored.
func namedIn(name []byte, names []string) bool {
	for _, n := range names {
		if len(n) != len(name) {
			continue
		}
		same := true
		for i := 0; i < len(n) && same; i++ {
			same = upper(n[i]) == upper(name[i])
		}
		if same {
			return true
		}
	}
	return false
}

// applyOwnFlags records flag changes this session made, so that sync does
// not announce them again. When nothing else changed in between (their
// MODSEQs follow the last one the session saw, one by one), the session
// has seen the mailbox up to them and need not read them back.
func (s *session) applyOwnFlags(changed []store.MessageState) {
	sel := s.sel
	sel.own()
	next := sel.highest + 1
	for _, m := range changed {
		if seq := sel.seqOf(m.UID); seq > 0 {
			sel.msgs[seq-1] = sel.msgOf(m)
		}
		if m.ModSeq == next {
			next++
		} else {
			next = 0
		}
	}
	if next > sel.highest+1 {
		sel.highest = next - 1
	}
}
