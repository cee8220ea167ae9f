package imapserver

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
	"mailroom/internal/store"
)

func init() {
	commands["SORT"] = command{states: stateSelected, run: cmdSort, noExpunge: true}
	commands["UID SORT"] = command{states: stateSelected, run: cmdSort}
}

// sortKey is one SORT criterion (RFC 5256 3, RFC 5957 DISPLAY).
type sortKey struct {
	name    string
	reverse bool
}

// cmdSort answers SORT (RFC 5256): the messages a search finds, ordered by
// the criteria, ties by message number.
func cmdSort(s *session, name string, p *imapwire.Parser) error {
	byUID := name == "UID SORT"
	if err := p.Expect(" ("); err != nil {
		return err
	}
	var keys []sortKey
	for !p.Take(")") {
		if len(keys) > 0 {
			if err := p.SP(); err != nil {
				return err
			}
		}
		k := sortKey{}
		if p.Take("REVERSE ") {
			k.reverse = true
		}
		a, err := p.Atom()
		if err != nil {
			return err
		}
		k.name = strings.ToUpper(a)
		switch k.name {
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
		default:
			return bad("Unknown SORT criterion %s", clipName(a))
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return bad("SORT needs at least one criterion")
	}
	if err := p.SP(); err != nil {
		return err
	}
	cs, err := p.AString()
	if err != nil {
		return err
	}
	if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
		return no("[BADCHARSET (UTF-8 US-ASCII)]", "Sort in UTF-8 or US-ASCII")
	}
	if err := p.SP(); err != nil {
		return err
	}
	root, err := parseSearchKeys(p)
	if err != nil {
		return err
	}
	found, err := s.search(root)
	if err != nil {
		return err
	}
	ordered, err := s.sortMessages(found, keys)
	if err != nil {
		return err
	}
	out := []byte("SORT")
	for _, i := range ordered {
		out = append(out, ' ')
		out = strconv.AppendUint(out, uint64(s.number(i, byUID)), 10)
	}
	s.untagged("%s", out)
	return nil
}

// sortable is what SORT compares of one message.
type sortable struct {
	idx                    int
	arrival, date          time.Time
	size                   int64
	subject                string
	from, to, cc           string
	displayFrom, displayTo string
}

// sortFields fills a sort key from a message's envelope.
var sortFields = map[string]func(*sortable, *message.Envelope){
	"DATE": func(it *sortable, e *message.Envelope) {
		if d, err := mailDate(e.Date); err == nil {
			it.date = d
		}
	},
	"SUBJECT":     func(it *sortable, e *message.Envelope) { it.subject = BaseSubject(e.Subject) },
	"FROM":        func(it *sortable, e *message.Envelope) { it.from = firstMailbox(e.From) },
	"TO":          func(it *sortable, e *message.Envelope) { it.to = firstMailbox(e.To) },
	"CC":          func(it *sortable, e *message.Envelope) { it.cc = firstMailbox(e.Cc) },
	"DISPLAYFROM": func(it *sortable, e *message.Envelope) { it.displayFrom = displayName(e.From) },
	"DISPLAYTO":   func(it *sortable, e *message.Envelope) { it.displayTo = displayName(e.To) },
}

// sortMessages orders the messages at idx by the keys.
func (s *session) sortMessages(idx []int, keys []sortKey) ([]int, error) {
	items := make([]sortable, 0, len(idx))
	uids := make([]uint32, len(idx))
	byUID := map[uint32]int{}
	for k, i := range idx {
		uids[k] = s.sel.msgs[i].UID
		byUID[uids[k]] = i
	}
	// Only the keys asked for are computed (parsing every Date field
	// when sorting by size is wasted).
	var fill []func(*sortable, *message.Envelope)
	for _, k := range keys {
		if f := sortFields[k.name]; f != nil {
			fill = append(fill, f)
		}
	}
	err := s.summaries(uids, func(i int, e *message.Envelope, arrival time.Time, size int64) {
		it := sortable{idx: i, arrival: arrival, size: size, date: arrival}
		if e != nil {
			for _, f := range fill {
				f(&it, e)
			}
		}
		items = append(items, it)
	}, byUID)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(items, func(a, b sortable) int {
		for _, k := range keys {
			var c int
			switch k.name {
			case "ARRIVAL":
				c = a.arrival.Compare(b.arrival)
			case "DATE":
				c = a.date.Compare(b.date)
			case "SIZE":
				c = cmp.Compare(a.size, b.size)
			case "SUBJECT":
				c = casemap(a.subject, b.subject)
			case "FROM":
				c = casemap(a.from, b.from)
			case "TO":
				c = casemap(a.to, b.to)
			case "CC":
				c = casemap(a.cc, b.cc)
			case "DISPLAYFROM":
				c = casemap(a.displayFrom, b.displayFrom)
			case "DISPLAYTO":
				c = casemap(a.displayTo, b.displayTo)
			}
			if k.reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.idx, b.idx)
	})
	out := make([]int, len(items))
	for k, it := range items {
		out[k] = it.idx
	}
	return out, nil
}

// summaries calls fn with each message's structure, arrival date and size.
func (s *session) summaries(uids []uint32, fn func(i int, env *message.Envelope, arrival time.Time, size int64), byUID map[uint32]int) error {
	return s.srv.store.Summaries(s.ctx(), s.user.ID, s.sel.name, uids, func(mi store.MessageInfo) error {
		env, err := s.envelopeOf(mi)
		if err != nil {
			return err
		}
		fn(byUID[mi.UID], env, mi.Date, mi.Size)
		return nil
	})
}

// envelopeOf returns a message's envelope (nil when it has none), read
// alone from its summary when it can be.
func (s *session) envelopeOf(mi store.MessageInfo) (*message.Envelope, error) {
	if env, ok := message.DecodeEnvelope(mi.Summary); ok {
		return env, nil
	}
	root, _, err := s.structure(mi, false, false, true)
	if err != nil {
		return nil, err
	}
	return root.Envelope, nil
}

// casemap compares as i;ascii-casemap does (RFC 4790 9.2): ASCII letters
// without regard to case, octet by octet.
func casemap(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := upper(a[i]), upper(b[i])
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(len(a), len(b))
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 32
	}
	return c
}

// firstMailbox is the local part of a list's first address (RFC 5256 3:
// "addr-mailbox"), or the name of a group that comes first (ENVELOPE
// writes a group's start as an address whose mailbox is its name).
func firstMailbox(list []message.Address) string {
	if len(list) == 0 {
		return ""
	}
	if list[0].Group != "" {
		return list[0].Group
	}
	return list[0].Mailbox
}

// displayName is the display name of a list's first address, decoded, or
// its address when it has none (RFC 5957 2).
func displayName(list []message.Address) string {
	for _, a := range list {
		if a.Group != "" {
			return message.DecodeWords(a.Group)
		}
		if a.GroupEnd {
			continue
		}
		if a.Name != "" {
			return message.DecodeWords(a.Name)
		}
		if a.Host == "" {
			return a.Mailbox
		}
		return a.Mailbox + "@" + a.Host
	}
	return ""
}

// BaseSubject extracts the base subject of a Subject field (RFC 5256 2.1):
// decoded, white space folded, and the "Re:", "Fwd:", "[blob]" and "(fwd)"
// that replies and forwards add taken off.
func BaseSubject(subject string) string {
	s, _ := baseSubject(subject)
	return s
}

// baseSubject is BaseSubject, and whether the subject was a reply's or a
// forward's (something taken off besides blobs and white space).
func baseSubject(subject string) (string, bool) {
	reply := false
	s := message.DecodeWords(subject)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), " ")
	for {
		// (2) trailing "(fwd)" and white space.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				s, reply = t[:len(t)-5], true
				continue
			}
			s = t
			break
		}
		// (3)-(5) leading "re:"/"fw:"/"fwd:" (each after any blobs) and
		// blobs, as long as something is left.
		for {
			changed := false
			if rest, ok := cutRefwd(s); ok {
				s, changed, reply = rest, true, true
			}
			if rest, ok := cutBlob(s); ok && strings.TrimSpace(rest) != "" {
				s, changed = rest, true
			}
			if !changed {
				break
			}
		}
		// (6) "[fwd: ...]" around the whole.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && strings.HasSuffix(s, "]") {
			s, reply = strings.TrimSpace(s[5:len(s)-1]), true
			continue
		}
		return s, reply
	}
}

// cutRefwd removes a leading subj-refwd: *WSP ("re" / "fw" / "fwd") *WSP
// *subj-blob ":".
func cutRefwd(s string) (string, bool) {
	t := strings.TrimLeft(s, " ")
	var rest string
	switch {
	case len(t) >= 3 && strings.EqualFold(t[:3], "fwd"):
		rest = t[3:]
	case len(t) >= 2 && (strings.EqualFold(t[:2], "re") || strings.EqualFold(t[:2], "fw")):
		rest = t[2:]
	default:
		return s, false
	}
	rest = strings.TrimLeft(rest, " ")
	for {
		r, ok := cutBlob(rest)
		if !ok {
			break
		}
		rest = r
	}
	if !strings.HasPrefix(rest, ":") {
		return s, false
	}
	return strings.TrimLeft(rest[1:], " "), true
}

// cutBlob removes a leading subj-blob: "[" *BLOBCHAR "]" *WSP.
func cutBlob(s string) (string, bool) {
	t := strings.TrimLeft(s, " ")
	if !strings.HasPrefix(t, "[") {
		return s, false
	}
	end := strings.IndexAny(t[1:], "[]")
	if end < 0 || t[1+end] != ']' {
		return s, false
	}
	return strings.TrimLeft(t[end+2:], " "), true
}
