package imapserver

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
)

func init() {
	commands["THREAD"] = command{states: stateSelected, run: cmdThread, noExpunge: true}
	commands["UID THREAD"] = command{states: stateSelected, run: cmdThread}
}

// node is a message in a thread, or a dummy standing for a message that is
// referred to but not in the mailbox (RFC 5256 2.2, REFERENCES).
type node struct {
	idx      int // -1 for a dummy
	order    int // the message number's index, or a dummy's first child's
	date     time.Time
	subject  string // base subject
	reply    bool   // the subject had Re:, Fwd: or the like
	parent   *node
	children []*node
}

func (n *node) dummy() bool { return n.idx < 0 }

// threadMsg is what threading reads of one message.
type threadMsg struct {
	idx        int
	date       time.Time
	subject    string
	reply      bool
	messageID  string
	references []string
}

// cmdThread answers THREAD (RFC 5256): ORDEREDSUBJECT or REFERENCES.
func cmdThread(s *session, name string, p *imapwire.Parser) error {
	byUID := name == "UID THREAD"
	if err := p.SP(); err != nil {
		return err
	}
	alg, err := p.Atom()
	if err != nil {
		return err
	}
	alg = strings.ToUpper(alg)
	if alg != "ORDEREDSUBJECT" && alg != "REFERENCES" {
		return bad("Unknown threading algorithm %s: use ORDEREDSUBJECT or REFERENCES", clipName(alg))
	}
	if err := p.SP(); err != nil {
		return err
	}
	cs, err := p.AString()
	if err != nil {
		return err
	}
	if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
		return no("[BADCHARSET (UTF-8 US-ASCII)]", "Thread in UTF-8 or US-ASCII")
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
	msgs, err := s.threadMessages(found)
	if err != nil {
		return err
	}
	var roots []*node
	if alg == "ORDEREDSUBJECT" {
		roots = orderedSubject(msgs)
	} else {
		roots = references(msgs)
	}
	out := []byte("THREAD ")
	for _, r := range roots {
		out = append(out, '(')
		out = s.writeThread(out, r, byUID)
		out = append(out, ')')
	}
	s.untagged("%s", out)
	return nil
}

// writeThread writes a node and what follows it: a single child goes on
// the same level, several each in parentheses.
func (s *session) writeThread(b []byte, n *node, byUID bool) []byte {
	for {
		if !n.dummy() {
			b = strconv.AppendUint(b, uint64(s.number(n.idx, byUID)), 10)
		}
		switch len(n.children) {
		case 0:
			return b
		case 1:
			if !n.dummy() {
				b = append(b, ' ')
			}
			n = n.children[0]
			continue
		}
		if !n.dummy() {
			b = append(b, ' ')
		}
		for _, c := range n.children {
			b = append(b, '(')
			b = s.writeThread(b, c, byUID)
			b = append(b, ')')
		}
		return b
	}
}

// threadMessages reads the dates, subjects and ids of the messages at idx.
func (s *session) threadMessages(idx []int) ([]threadMsg, error) {
	uids := make([]uint32, len(idx))
	byUID := map[uint32]int{}
	for k, i := range idx {
		uids[k] = s.sel.msgs[i].UID
		byUID[uids[k]] = i
	}
	infos, err := s.infosOf(uids)
	if err != nil {
		return nil, err
	}
	var out []threadMsg
	for _, mi := range infos {
		if mi == nil {
			continue
		}
		e, err := s.envelopeOf(mi)
		if err != nil {
			return nil, err
		}
		m := threadMsg{idx: byUID[mi.UID], date: mi.Date}
		if e != nil {
			if d, err := message.MailDate(e.Date); err == nil {
				m.date = d
			}
			m.subject, m.reply = message.BaseSubject(e.Subject)
			m.messageID = firstID(e.MessageID)
			m.references = e.References
			if len(m.references) == 0 {
				if id := firstID(e.InReplyTo); id != "" {
					m.references = []string{id}
				}
			}
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b threadMsg) int { return cmp.Compare(a.idx, b.idx) })
	return out, nil
}

// firstID returns the first "<...>" message id of a field, or "".
func firstID(v string) string {
	ids := message.MessageIDs(v)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// byDate orders nodes by sent date, then by message number (RFC 5256 2.2).
func byDate(a, b *node) int {
	if c := a.date.Compare(b.date); c != 0 {
		return c
	}
	return cmp.Compare(a.order, b.order)
}

// sortTree sorts every level by date; a dummy takes the date of its first
// child once those are sorted.
func sortTree(ns []*node) {
	for _, n := range ns {
		sortTree(n.children)
		if n.dummy() && len(n.children) > 0 {
			n.date, n.order = n.children[0].date, n.children[0].order
		}
	}
	slices.SortStableFunc(ns, byDate)
}

// orderedSubject threads by base subject (RFC 5256 ORDEREDSUBJECT): each
// subject's first message by date is the parent of the others.
func orderedSubject(msgs []threadMsg) []*node {
	groups := map[string]*node{}
	var roots []*node
	sorted := slices.Clone(msgs)
	slices.SortStableFunc(sorted, func(a, b threadMsg) int {
		if c := casemap(a.subject, b.subject); c != 0 {
			return c
		}
		if c := a.date.Compare(b.date); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	for _, m := range sorted {
		n := &node{idx: m.idx, order: m.idx, date: m.date}
		key := strings.ToUpper(m.subject)
		if first, ok := groups[key]; ok {
			first.children = append(first.children, n)
			continue
		}
		groups[key] = n
		roots = append(roots, n)
	}
	slices.SortStableFunc(roots, byDate)
	return roots
}

// references threads by the References and In-Reply-To fields (RFC 5256
// REFERENCES, after Jamie Zawinski's algorithm).
func references(msgs []threadMsg) []*node {
	ids := map[string]*node{}
	container := func(id string) *node {
		n := ids[id]
		if n == nil {
			n = &node{idx: -1}
			ids[id] = n
		}
		return n
	}
	unique := 0
	for _, m := range msgs {
		id := m.messageID
		if id == "" || ids[id] != nil && !ids[id].dummy() {
			unique++
			id = "\x00unique" + strconv.Itoa(unique) // missing or duplicate
		}
		n := container(id)
		n.idx, n.order, n.date, n.subject, n.reply = m.idx, m.idx, m.date, m.subject, m.reply
		// Link the references in order, without loops and without
		// changing links already made.
		var prev *node
		for _, ref := range m.references {
			r := container(ref)
			if prev != nil && r.parent == nil && r != prev && !isAncestor(r, prev) {
				r.parent = prev
				prev.children = append(prev.children, r)
			}
			prev = r
		}
		// The last reference is the parent, whatever was there before.
		if n.parent != nil {
			n.parent.children = slices.DeleteFunc(n.parent.children, func(c *node) bool { return c == n })
			n.parent = nil
		}
		if prev != nil && prev != n && !isAncestor(n, prev) {
			n.parent = prev
			prev.children = append(prev.children, n)
		}
	}
	var roots []*node
	for _, n := range ids {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	roots = prune(roots, true)
	sortTree(roots)
	roots = groupBySubject(roots)
	sortTree(roots)
	return roots
}

// isAncestor reports whether a is an ancestor of n (or n itself).
func isAncestor(a, n *node) bool {
	for ; n != nil; n = n.parent {
		if n == a {
			return true
		}
	}
	return false
}

// prune drops dummies without children and puts the children of the others
// in their place, but for a root dummy with several children (RFC 5256
// REFERENCES step 4).
func prune(ns []*node, root bool) []*node {
	var out []*node
	for _, n := range ns {
		n.children = prune(n.children, false)
		for _, c := range n.children {
			c.parent = n
		}
		switch {
		case !n.dummy():
			out = append(out, n)
		case len(n.children) == 0:
		case root && len(n.children) > 1:
			out = append(out, n)
		default:
			for _, c := range n.children {
				c.parent = n.parent
			}
			out = append(out, n.children...)
		}
	}
	return out
}

// subjectOf is a root's subject: its own, or its first child's for a dummy.
func subjectOf(n *node) (string, bool) {
	if n.dummy() && len(n.children) > 0 {
		return n.children[0].subject, n.children[0].reply
	}
	return n.subject, n.reply
}

// groupBySubject merges root threads of the same base subject (RFC 5256
// REFERENCES step 5).
func groupBySubject(roots []*node) []*node {
	table := map[string]*node{}
	for _, r := range roots {
		subj, reply := subjectOf(r)
		if subj == "" {
			continue
		}
		key := strings.ToUpper(subj)
		old, ok := table[key]
		if !ok {
			table[key] = r
			continue
		}
		_, oldReply := subjectOf(old)
		if r.dummy() && !old.dummy() || !old.dummy() && oldReply && !reply {
			table[key] = r
		}
	}
	var out []*node
	for _, r := range roots {
		subj, reply := subjectOf(r)
		e := table[strings.ToUpper(subj)]
		if subj == "" || e == nil || e == r {
			out = append(out, r)
			continue
		}
		_, eReply := subjectOf(e)
		switch {
		case e.dummy() && r.dummy():
			for _, c := range r.children {
				c.parent = e
			}
			e.children = append(e.children, r.children...)
		case e.dummy(), reply && !eReply:
			r.parent = e
			e.children = append(e.children, r)
		default:
			// A new dummy holds both and takes the entry's place (the
			// entry's node becomes the dummy, its message moves below).
			moved := new(node)
			*moved = *e
			for _, c := range moved.children {
				c.parent = moved
			}
			*e = node{idx: -1, children: []*node{moved, r}}
			moved.parent, r.parent = e, e
		}
	}
	return out
}
