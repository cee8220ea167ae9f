package imapserver

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
	"mailroom/internal/store"
	"mailroom/internal/textindex"
)

func init() {
	commands["SEARCH"] = command{states: stateSelected, run: cmdSearch, noExpunge: true}
	commands["UID SEARCH"] = command{states: stateSelected, run: cmdSearch}
}

// criterion is one search key (RFC 9051 6.4.4), a node of the tree.
type criterion struct {
	key   string // upper case
	arg   string
	n     int64
	date  time.Time
	set   imapwire.SeqSet
	kids  []*criterion // AND for "()", NOT has one, OR two
	field string       // HEADER's field name, lower case

	// set with "*" resolved against largest, made once per search, not
	// once per message
	resolved *imapwire.SeqSet
	largest  uint32
}

// resolvedSet returns c's set with "*" as largest.
func (c *criterion) resolvedSet(largest uint32) *imapwire.SeqSet {
	if c.resolved == nil || c.largest != largest {
		r := c.set.Resolve(largest)
		c.resolved, c.largest = &r, largest
	}
	return c.resolved
}

// has reports whether the tree uses a key.
func (c *criterion) has(key string) bool {
	if c.key == key {
		return true
	}
	for _, k := range c.kids {
		if k.has(key) {
			return true
		}
	}
	return false
}

// needs says what evaluating the tree reads beyond flags.
func (c *criterion) needs() (info, body bool) {
	switch c.key {
	case "FROM", "TO", "CC", "BCC", "SUBJECT", "LARGER", "SMALLER", "BEFORE", "ON", "SINCE",
		"SENTBEFORE", "SENTON", "SENTSINCE":
		info = true
	case "HEADER", "BODY", "TEXT":
		info, body = true, true
	}
	for _, k := range c.kids {
		i, b := k.needs()
		info, body = info || i, body || b
	}
	return
}

// searchReturn is SEARCH RETURN's options (RFC 4731 ESEARCH, RFC 5182
// SEARCHRES).
type searchReturn struct {
	min, max, all, count, save bool
}

func cmdSearch(s *session, name string, p *imapwire.Parser) error {
	byUID := name == "UID SEARCH"
	if err := p.SP(); err != nil {
		return err
	}
	var ret *searchReturn
	if p.Take("RETURN (") {
		ret = &searchReturn{}
		for i := 0; !p.Take(")"); i++ {
			if i > 0 {
				if err := p.SP(); err != nil {
					return err
				}
			}
			a, err := p.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(a) {
			case "MIN":
				ret.min = true
			case "MAX":
				ret.max = true
			case "ALL":
				ret.all = true
			case "COUNT":
				ret.count = true
			case "SAVE":
				ret.save = true
			default:
				return bad("Unknown SEARCH RETURN option %s", clipName(a))
			}
		}
		if !ret.min && !ret.max && !ret.count && !ret.save {
			ret.all = true // RETURN () is RETURN (ALL)
		}
		if err := p.SP(); err != nil {
			return err
		}
	}
	if p.Take("CHARSET ") {
		cs, err := p.AString()
		if err != nil {
			return err
		}
		if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
			return no("[BADCHARSET (UTF-8 US-ASCII)]", "Search in UTF-8 or US-ASCII")
		}
		if err := p.SP(); err != nil {
			return err
		}
	}
	root, err := parseSearchKeys(p)
	if err != nil {
		return err
	}
	if ret == nil && s.rev2 {
		ret = &searchReturn{all: true} // IMAP4rev2 answers ESEARCH (RFC 9051 6.4.4)
	}
	found, err := s.search(root)
	if err != nil {
		return err
	}
	withModSeq := root.has("MODSEQ")
	if withModSeq {
		s.enableCondstore()
	}
	// RFC 7162 3.1.5: the highest MODSEQ of the messages returned.
	highest := func(idx ...int) int64 {
		var h int64
		for _, i := range idx {
			h = max(h, s.sel.msgs[i].ModSeq)
		}
		return h
	}
	if ret == nil {
		out := []byte("SEARCH")
		for _, i := range found {
			out = append(out, ' ')
			out = strconv.AppendUint(out, uint64(s.number(i, byUID)), 10)
		}
		if withModSeq && len(found) > 0 {
			out = append(out, " (MODSEQ "...)
			out = strconv.AppendInt(out, highest(found...), 10)
			out = append(out, ')')
		}
		s.untagged("%s", out)
		return nil
	}
	if ret.save {
		s.saveResult(found, ret)
		if !ret.min && !ret.max && !ret.all && !ret.count {
			return nil // SAVE alone answers nothing (RFC 5182 2.1)
		}
	}
	out := []byte(`ESEARCH (TAG "` + s.tag + `")`)
	if byUID {
		out = append(out, " UID"...)
	}
	if ret.min && len(found) > 0 {
		out = append(out, " MIN "...)
		out = strconv.AppendUint(out, uint64(s.number(found[0], byUID)), 10)
	}
	if ret.max && len(found) > 0 {
		out = append(out, " MAX "...)
		out = strconv.AppendUint(out, uint64(s.number(found[len(found)-1], byUID)), 10)
	}
	if ret.count {
		out = append(out, " COUNT "...)
		out = strconv.AppendInt(out, int64(len(found)), 10)
	}
	if ret.all && len(found) > 0 {
		nums := make([]uint32, len(found))
		for k, i := range found {
			nums[k] = s.number(i, byUID)
		}
		out = append(out, " ALL "...)
		out = append(out, imapwire.Compact(nums)...)
	}
	if withModSeq && len(found) > 0 {
		h := highest(found...)
		if !ret.all && !ret.count {
			h = 0
			if ret.min {
				h = highest(found[0])
			}
			if ret.max {
				h = max(h, highest(found[len(found)-1]))
			}
		}
		out = append(out, " MODSEQ "...)
		out = strconv.AppendInt(out, h, 10)
	}
	s.untagged("%s", out)
	return nil
}

// number is the message number, or UID, of the message at index i.
func (s *session) number(i int, byUID bool) uint32 {
	if byUID {
		return s.sel.msgs[i].UID
	}
	return uint32(i + 1)
}

// saveResult keeps a search result for "$" (RFC 5182 2.4): all of it, or
// only the MIN and MAX when those were all that was asked.
func (s *session) saveResult(found []int, ret *searchReturn) {
	keep := found
	if !ret.all && !ret.count && (ret.min || ret.max) && len(found) > 0 {
		keep = nil
		if ret.min {
			keep = append(keep, found[0])
		}
		if ret.max && (!ret.min || len(found) > 1) {
			keep = append(keep, found[len(found)-1])
		}
	}
	s.sel.saved = s.sel.saved[:0]
	for _, i := range keep {
		s.sel.saved = append(s.sel.saved, s.sel.msgs[i].UID)
	}
}

// parseSearchKeys reads the search keys that end a command, all of which
// must match.
func parseSearchKeys(p *imapwire.Parser) (*criterion, error) {
	root := &criterion{key: "AND"}
	for {
		c, err := parseCriterion(p, 0)
		if err != nil {
			return nil, err
		}
		root.kids = append(root.kids, c)
		if !p.Take(" ") {
			break
		}
	}
	return root, p.End()
}

// parseCriterion reads one search key.
func parseCriterion(p *imapwire.Parser, depth int) (*criterion, error) {
	if depth > 50 {
		return nil, bad("Search keys nested too deep")
	}
	if p.Take("(") {
		c := &criterion{key: "AND"}
		for !p.Take(")") {
			if len(c.kids) > 0 {
				if err := p.SP(); err != nil {
					return nil, err
				}
			}
			k, err := parseCriterion(p, depth+1)
			if err != nil {
				return nil, err
			}
			c.kids = append(c.kids, k)
		}
		return c, nil
	}
	if c := p.Peek(); c == '$' || c == '*' || (c >= '0' && c <= '9') {
		set, err := p.SeqSet()
		return &criterion{key: "SEQ", set: set}, err
	}
	a, err := p.Atom()
	if err != nil {
		return nil, bad("Expected a search key")
	}
	c := &criterion{key: strings.ToUpper(a)}
	switch c.key {
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "NEW", "OLD", "RECENT",
		"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
	case "KEYWORD", "UNKEYWORD":
		if err := p.SP(); err != nil {
			return nil, err
		}
		c.arg, err = p.Atom()
	case "FROM", "TO", "CC", "BCC", "SUBJECT", "BODY", "TEXT":
		if err := p.SP(); err != nil {
			return nil, err
		}
		c.arg, err = p.AString()
		c.arg = strings.ToLower(c.arg)
	case "HEADER":
		if err := p.SP(); err != nil {
			return nil, err
		}
		if c.field, err = p.AString(); err != nil {
			return nil, err
		}
		c.field = strings.ToLower(c.field)
		if err := p.SP(); err != nil {
			return nil, err
		}
		c.arg, err = p.AString()
		c.arg = strings.ToLower(c.arg)
	case "LARGER", "SMALLER":
		if err := p.SP(); err != nil {
			return nil, err
		}
		c.n, err = p.Number64()
	case "MODSEQ": // RFC 7162 3.1.5: [entry-name entry-type] mod-sequence
		if err := p.SP(); err != nil {
			return nil, err
		}
		if p.Peek() == '"' {
			if _, err := p.String(); err != nil {
				return nil, err
			}
			if err := p.SP(); err != nil {
				return nil, err
			}
			t, err := p.Atom()
			if err != nil {
				return nil, err
			}
			if t = strings.ToLower(t); t != "priv" && t != "shared" && t != "all" {
				return nil, bad("The MODSEQ entry type is priv, shared or all")
			}
			if err := p.SP(); err != nil {
				return nil, err
			}
		}
		c.n, err = p.Number64()
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		if err := p.SP(); err != nil {
			return nil, err
		}
		c.date, err = p.Date()
	case "UID":
		if err := p.SP(); err != nil {
			return nil, err
		}
		c.set, err = p.SeqSet()
	case "NOT":
		if err := p.SP(); err != nil {
			return nil, err
		}
		k, err := parseCriterion(p, depth+1)
		if err != nil {
			return nil, err
		}
		c.kids = []*criterion{k}
	case "OR":
		for range 2 {
			if err := p.SP(); err != nil {
				return nil, err
			}
			k, err := parseCriterion(p, depth+1)
			if err != nil {
				return nil, err
			}
			c.kids = append(c.kids, k)
		}
	default:
		return nil, bad("Unknown search key %s", clipName(a))
	}
	return c, err
}

// candidate is one message being searched, with what was read of it.
type candidate struct {
	seq   int
	state store.MessageState
	info  *fetchInfo
	root  *message.Part
	body  []byte
	text  *message.Text // of body, made when a key compares it
}

// searchText is the text TEXT and BODY compare: decoded, as the search
// index holds it.
func (m *candidate) searchText() *message.Text {
	if m.text == nil {
		t := message.SearchText(m.body, m.root, textindex.TextLimit)
		m.text = &t
	}
	return m.text
}

// The outcomes of a key decided without reading the message.
const (
	isFalse = iota
	isTrue
	isUnknown
)

// search returns the indexes of the messages matching the tree. Keys on
// the text narrow the messages first through the search index; a message
// is read only when flags and the index leave it undecided.
func (s *session) search(root *criterion) ([]int, error) {
	sel := s.sel
	if root.onFlags() {
		return s.searchFlags(root), nil
	}
	cands, err := s.textCandidates(root)
	if err != nil {
		return nil, err
	}
	needInfo, needBody := root.needs()
	var out, undecided []int
	var c candidate // one for all: decide keeps nothing of it
	for i, m := range sel.msgs {
		c = candidate{seq: i + 1, state: sel.state(m)}
		switch s.decide(root, &c, cands) {
		case isTrue:
			out = append(out, i)
		case isUnknown:
			undecided = append(undecided, i)
		}
	}
	if len(undecided) == 0 {
		return out, nil
	}
	uids := make([]uint32, len(undecided))
	for j, i := range undecided {
		uids[j] = sel.msgs[i].UID
	}
	infos, err := s.infosOf(uids)
	if err != nil {
		return nil, err
	}
	if needBody {
		return s.searchBodies(root, out, undecided, uids, infos)
	}
	for j, i := range undecided {
		m := sel.msgs[i]
		c := &candidate{seq: i + 1, state: sel.state(m), info: infos[j]}
		if needInfo {
			if c.info == nil {
				continue
			}
			// Without the body, only the envelope is read.
			env, err := s.envelopeOf(c.info)
			if err != nil {
				return nil, err
			}
			c.root = &message.Part{Envelope: env}
		}
		if s.matches(root, c) {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out, nil
}

// searchBodies adds to out the messages at undecided (UIDs uids, infos)
// that match the tree, reading them from the store in one go.
func (s *session) searchBodies(root *criterion, out, undecided []int, uids []uint32, infos []*fetchInfo) ([]int, error) {
	sel := s.sel
	at := make(map[uint32]int, len(uids))
	read := make([]uint32, 0, len(uids))
	for j, uid := range uids {
		if infos[j] != nil {
			at[uid] = j
			read = append(read, uid)
		}
	}
	var buf bytes.Buffer
	err := s.srv.store.ReadMessages(s.ctx(), s.user.ID, sel.name, read, func(uid uint32, r io.Reader) error {
		j := at[uid]
		i := undecided[j]
		c := &candidate{seq: i + 1, state: sel.state(sel.msgs[i]), info: infos[j]}
		buf.Reset()
		if _, err := buf.ReadFrom(io.LimitReader(r, s.cfg.MaxMessageSize*2)); err != nil {
			return fmt.Errorf("read message %d: %w", uid, err)
		}
		c.body = buf.Bytes()
		if c.root = s.decodeStructure(c.info); c.root == nil {
			c.root = s.parseStructure(c.info, c.body)
		}
		if s.matches(root, c) {
			out = append(out, i)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// indexedFields are the keys the search index narrows, and where they
// look. HEADER does too, but for the fields every copy has in front of
// the message (not in the index).
var indexedFields = map[string]store.TextField{
	"TEXT": store.TextAll, "BODY": store.TextBody, "HEADER": store.TextHeader,
	"SUBJECT": store.TextHeader, "FROM": store.TextHeader, "TO": store.TextHeader, "CC": store.TextHeader, "BCC": store.TextHeader,
}

// textCandidates asks the search index for the candidates of each key of
// the tree it narrows: a sorted superset of the UIDs that match it.
func (s *session) textCandidates(c *criterion) (map[*criterion][]uint32, error) {
	out := map[*criterion][]uint32{}
	var walk func(c *criterion) error
	walk = func(c *criterion) error {
		for _, k := range c.kids {
			if err := walk(k); err != nil {
				return err
			}
		}
		field, ok := indexedFields[c.key]
		if !ok || utf8.RuneCountInString(c.arg) < 3 || c.key == "HEADER" && (c.field == "return-path" || c.field == "delivered-to") {
			return nil
		}
		uids, err := s.srv.store.TextCandidates(s.ctx(), s.user.ID, s.sel.name, field, c.arg)
		out[c] = uids
		return err
	}
	return out, walk(c)
}

// decide evaluates the tree on what is known without reading the message
// (its flags, UID and number, and the search index's candidates): true,
// false, or unknown when the message must be read.
func (s *session) decide(c *criterion, m *candidate, cands map[*criterion][]uint32) int {
	switch c.key {
	case "AND", "OR":
		all, short := isTrue, isFalse // AND: all true is true, a false is false
		if c.key == "OR" {
			all, short = isFalse, isTrue
		}
		res := all
		for _, k := range c.kids {
			switch s.decide(k, m, cands) {
			case short:
				return short
			case isUnknown:
				res = isUnknown
			}
		}
		return res
	case "NOT":
		switch s.decide(c.kids[0], m, cands) {
		case isTrue:
			return isFalse
		case isFalse:
			return isTrue
		}
		return isUnknown
	}
	if uids, ok := cands[c]; ok {
		if _, found := slices.BinarySearch(uids, m.state.UID); !found {
			return isFalse
		}
		return isUnknown
	}
	if info, body := c.needs(); info || body {
		return isUnknown
	}
	if s.matches(c, m) {
		return isTrue
	}
	return isFalse
}

// onFlags reports whether the tree looks at flags alone (UNSEEN, FLAGGED
// NOT DELETED...).
func (c *criterion) onFlags() bool {
	switch c.key {
	case "AND", "OR", "NOT":
		for _, k := range c.kids {
			if !k.onFlags() {
				return false
			}
		}
		return true
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN",
		"KEYWORD", "UNKEYWORD":
		return true
	}
	return false
}

// searchFlags answers a search on flags alone: the tree is evaluated once
// per distinct set of flags the mailbox has (a few), not once per message
// (2.2 ms for 100,000 messages, against 0.2).
func (s *session) searchFlags(root *criterion) []int {
	sel := s.sel
	match := make([]bool, len(sel.flags.sets))
	for i, set := range sel.flags.sets {
		match[i] = s.matches(root, &candidate{state: store.MessageState{Flags: set}})
	}
	var out []int
	for i, m := range sel.msgs {
		if match[m.fs] {
			out = append(out, i)
		}
	}
	return out
}

// systemFlag is the flag a search key names (SEEN: \Seen).
func systemFlag(key string) string {
	switch key {
	case "ANSWERED":
		return store.FlagAnswered
	case "DELETED":
		return store.FlagDeleted
	case "DRAFT":
		return store.FlagDraft
	case "FLAGGED":
		return store.FlagFlagged
	}
	return store.FlagSeen
}

func (s *session) matches(c *criterion, m *candidate) bool {
	has := func(f string) bool { return slices.Contains(m.state.Flags, f) }
	switch c.key {
	case "AND":
		for _, k := range c.kids {
			if !s.matches(k, m) {
				return false
			}
		}
		return true
	case "NOT":
		return !s.matches(c.kids[0], m)
	case "OR":
		return s.matches(c.kids[0], m) || s.matches(c.kids[1], m)
	case "ALL":
		return true
	case "OLD":
		return !s.sel.isRecent(m.state.UID)
	case "RECENT":
		return s.sel.isRecent(m.state.UID)
	case "NEW":
		return s.sel.isRecent(m.state.UID) && !has(store.FlagSeen)
	case "SEQ", "UID":
		if c.set.Saved {
			return slices.Contains(s.sel.saved, m.state.UID)
		}
		if c.key == "SEQ" {
			return c.resolvedSet(uint32(len(s.sel.msgs))).Contains(uint32(m.seq))
		}
		return c.resolvedSet(s.sel.lastUID()).Contains(m.state.UID)
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN":
		return has(systemFlag(c.key))
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return !has(systemFlag(c.key[2:]))
	case "KEYWORD":
		return slices.ContainsFunc(m.state.Flags, func(f string) bool { return strings.EqualFold(f, c.arg) })
	case "UNKEYWORD":
		return !slices.ContainsFunc(m.state.Flags, func(f string) bool { return strings.EqualFold(f, c.arg) })
	case "MODSEQ":
		return m.state.ModSeq >= c.n
	case "LARGER":
		return m.info.Size > c.n
	case "SMALLER":
		return m.info.Size < c.n
	case "BEFORE", "ON", "SINCE":
		return compareDate(c.key, m.info.Date, c.date)
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		sent, err := parseDateHeader(m.root.Envelope)
		if err != nil {
			return false
		}
		return compareDate(strings.TrimPrefix(c.key, "SENT"), sent, c.date)
	case "SUBJECT":
		return m.root.Envelope != nil && strings.Contains(strings.ToLower(message.DecodeWords(m.root.Envelope.Subject)), c.arg)
	case "FROM", "TO", "CC", "BCC":
		return m.root.Envelope != nil && addressesContain(envelopeField(m.root.Envelope, c.key), c.arg)
	case "HEADER":
		h := headerFields(nil, m.body[:min(int64(len(m.body)), m.root.BodyStart)], []string{c.field}, false)
		if len(h) <= 2 {
			return false
		}
		if c.arg == "" {
			return true
		}
		return strings.Contains(strings.ToLower(message.DecodeWords(string(h))), c.arg)
	case "BODY":
		return containsFold(m.searchText().Body, c.arg)
	case "TEXT":
		t := m.searchText()
		return containsFold(t.Header, c.arg) || containsFold(t.Body, c.arg)
	}
	return false
}

// compareDate compares dates without time or zone (RFC 9051 6.4.4).
func compareDate(op string, t, d time.Time) bool {
	y1, m1, d1 := t.Date()
	day := time.Date(y1, m1, d1, 0, 0, 0, 0, time.UTC)
	switch op {
	case "BEFORE":
		return day.Before(d)
	case "ON":
		return day.Equal(d)
	}
	return !day.Before(d)
}

func parseDateHeader(e *message.Envelope) (time.Time, error) {
	if e == nil {
		return time.Time{}, io.EOF
	}
	return message.MailDate(e.Date)
}

func envelopeField(e *message.Envelope, key string) []message.Address {
	switch key {
	case "FROM":
		return e.From
	case "TO":
		return e.To
	case "CC":
		return e.Cc
	}
	return e.Bcc
}

func addressesContain(list []message.Address, s string) bool {
	for _, a := range list {
		if strings.Contains(strings.ToLower(message.AddressText(a)), s) {
			return true
		}
	}
	return false
}

// containsFold reports whether b holds s (lower case) without regard to
// case, without copying b: each place where s's first letter appears in
// either case is compared. The next place of each case is remembered, so
// that a letter frequent in one case and rare in the other is not
// searched for again and again.
func containsFold(b []byte, s string) bool {
	if s == "" {
		return true
	}
	if len(b) < len(s) {
		return false
	}
	lo, up := s[0], s[0]
	if 'a' <= lo && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	last := len(b) - len(s) + 1 // candidates start before it
	next := func(c byte, from int) int {
		if i := bytes.IndexByte(b[from:last], c); i >= 0 {
			return from + i
		}
		return last
	}
	nl, nu := next(lo, 0), last
	if up != lo {
		nu = next(up, 0)
	}
	for {
		i := min(nl, nu)
		if i >= last {
			return false
		}
		if bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
		if nl == i {
			nl = next(lo, i+1)
		}
		if nu == i {
			nu = next(up, i+1)
		}
	}
}
