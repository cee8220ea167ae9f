package imapserver

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"mailroom/internal/imapwire"
	"mailroom/internal/store"
)

func init() {
	commands["LIST"] = command{states: stateIn, run: cmdList}
	commands["LSUB"] = command{states: stateIn, run: cmdLsub}
	commands["CREATE"] = command{states: stateIn, run: cmdCreate}
	commands["DELETE"] = command{states: stateIn, run: cmdDelete}
	commands["RENAME"] = command{states: stateIn, run: cmdRename}
	commands["SUBSCRIBE"] = command{states: stateIn, run: cmdSubscribe}
	commands["UNSUBSCRIBE"] = command{states: stateIn, run: cmdSubscribe}
	commands["STATUS"] = command{states: stateIn, run: cmdStatus}
	commands["NAMESPACE"] = command{states: stateIn, run: cmdNamespace}
}

// readMailbox reads a mailbox argument, after its space.
func (s *session) readMailbox(p *imapwire.Parser) (string, error) {
	if err := p.SP(); err != nil {
		return "", err
	}
	raw, err := p.AString()
	if err != nil {
		return "", err
	}
	return s.mailboxName(raw)
}

// checkName refuses names a mailbox cannot have.
func checkName(name string) error {
	switch {
	case name == "":
		return no("[CANNOT]", "A mailbox needs a name")
	case len(name) > 512:
		return no("[CANNOT]", "Mailbox names are limited to 512 octets")
	case strings.Contains(name, store.Separator+store.Separator) || strings.HasPrefix(name, store.Separator):
		return no("[CANNOT]", "A mailbox name cannot have an empty level (%q)", store.Separator)
	case strings.ContainsAny(name, "*%\r\n\x00"):
		return no("[CANNOT]", "A mailbox name cannot hold '*', '%%' or control characters")
	}
	return nil
}

func cmdNamespace(s *session, _ string, p *imapwire.Parser) error {
	if err := p.End(); err != nil {
		return err
	}
	s.untagged(`NAMESPACE (("" "%s")) NIL NIL`, store.Separator)
	return nil
}

func cmdCreate(s *session, _ string, p *imapwire.Parser) error {
	name, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	use := ""
	if p.Take(" (") { // RFC 6154 5.3: CREATE name (USE (\Sent))
		if err := p.Expect("USE ("); err != nil {
			return err
		}
		flags, err := p.FlagList(true)
		if err != nil {
			return err
		}
		if err := p.Expect("))"); err != nil {
			return err
		}
		if len(flags) != 1 || !slices.Contains([]string{store.UseDrafts, store.UseSent, store.UseJunk, store.UseTrash, store.UseArchive}, canonicalUse(flags[0])) {
			return no("[USEATTR]", "Give one of \\Drafts, \\Sent, \\Junk, \\Trash, \\Archive")
		}
		use = canonicalUse(flags[0])
	}
	if err := p.End(); err != nil {
		return err
	}
	name = strings.TrimSuffix(name, store.Separator)
	if err := checkName(name); err != nil {
		return err
	}
	if name == store.Inbox {
		return no("[ALREADYEXISTS]", "INBOX always exists")
	}
	// Superior names are made too (RFC 9051 6.3.4 SHOULD).
	parts := strings.Split(name, store.Separator)
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], store.Separator)
		if _, err := s.srv.store.CreateMailbox(s.ctx(), s.user.ID, parent, ""); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	_, err = s.srv.store.CreateMailbox(s.ctx(), s.user.ID, name, use)
	return err
}

// canonicalUse spells a special-use attribute as RFC 6154 does.
func canonicalUse(f string) string {
	for _, u := range []string{store.UseDrafts, store.UseSent, store.UseJunk, store.UseTrash, store.UseArchive, store.UseAll, store.UseFlagged} {
		if strings.EqualFold(f, u) {
			return u
		}
	}
	return f
}

func cmdDelete(s *session, _ string, p *imapwire.Parser) error {
	name, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	if name == store.Inbox {
		return no("[CANNOT]", "INBOX cannot be deleted")
	}
	if err := s.srv.store.DeleteMailbox(s.ctx(), s.user.ID, name); err != nil {
		return err
	}
	if s.sel != nil && s.sel.name == name {
		s.unselect()
	}
	return nil
}

func cmdRename(s *session, _ string, p *imapwire.Parser) error {
	from, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	to, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	to = strings.TrimSuffix(to, store.Separator)
	if err := checkName(to); err != nil {
		return err
	}
	if to == store.Inbox {
		return no("[ALREADYEXISTS]", "INBOX always exists")
	}
	if from != store.Inbox && strings.HasPrefix(to, from+store.Separator) {
		return no("[CANNOT]", "A mailbox cannot be moved inside itself")
	}
	if _, err := s.srv.store.Mailbox(s.ctx(), s.user.ID, to); err == nil {
		return no("[ALREADYEXISTS]", "A mailbox of that name exists")
	}
	parts := strings.Split(to, store.Separator)
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], store.Separator)
		if parent == from || strings.HasPrefix(parent, from+store.Separator) {
			continue
		}
		if _, err := s.srv.store.CreateMailbox(s.ctx(), s.user.ID, parent, ""); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	if err := s.srv.store.RenameMailbox(s.ctx(), s.user.ID, from, to); err != nil {
		return err
	}
	if s.sel != nil && (s.sel.name == from || strings.HasPrefix(s.sel.name, from+store.Separator)) && from != store.Inbox {
		s.sel.name = to + strings.TrimPrefix(s.sel.name, from)
	}
	return nil
}

func cmdSubscribe(s *session, name string, p *imapwire.Parser) error {
	mb, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	return s.srv.store.SetSubscribed(s.ctx(), s.user.ID, mb, name == "SUBSCRIBE")
}

// listEntry is one name LIST shows.
type listEntry struct {
	name       string
	exists     bool
	specialUse string
	subscribed bool
	children   bool
}

func cmdList(s *session, _ string, p *imapwire.Parser) error { return s.list(p, false) }
func cmdLsub(s *session, _ string, p *imapwire.Parser) error { return s.list(p, true) }

// list answers LIST and LSUB (RFC 9051 6.3.9, RFC 3501 6.3.9, RFC 6154).
func (s *session) list(p *imapwire.Parser, lsub bool) error {
	if err := p.SP(); err != nil {
		return err
	}
	ref, err := p.AString()
	if err != nil {
		return err
	}
	if err := p.SP(); err != nil {
		return err
	}
	var pattern string
	if c := p.Peek(); c == '"' || p.IsLiteral() {
		pattern, err = p.String()
	} else {
		pattern, err = listPattern(p)
	}
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	if !s.utf8 {
		if d, err := imapwire.DecodeUTF7(ref); err == nil {
			ref = d
		}
		if d, err := imapwire.DecodeUTF7(pattern); err == nil {
			pattern = d
		}
	}
	kind := "LIST"
	if lsub {
		kind = "LSUB"
	}
	if pattern == "" && !lsub {
		s.untagged(`LIST (\Noselect) "%s" ""`, store.Separator)
		return nil
	}
	full := pattern
	if ref != "" && !strings.HasPrefix(pattern, store.Separator) {
		full = strings.TrimSuffix(ref, store.Separator) + store.Separator + pattern
		if strings.HasSuffix(ref, store.Separator) {
			full = ref + pattern
		}
	}
	entries, err := s.listEntries()
	if err != nil {
		return err
	}
	if lsub {
		entries = lsubEntries(entries, full)
	}
	for _, e := range entries {
		if !matchPattern(full, e.name) {
			continue
		}
		var attrs []string
		if !e.exists {
			attrs = append(attrs, `\Noselect`)
		}
		if !lsub {
			if e.children {
				attrs = append(attrs, `\HasChildren`)
			} else {
				attrs = append(attrs, `\HasNoChildren`)
			}
			if e.specialUse != "" {
				attrs = append(attrs, e.specialUse)
			}
		}
		line := []byte(kind + " (" + strings.Join(attrs, " ") + `) "` + store.Separator + `" `)
		line = append(line, s.wireName(e.name)...)
		s.untagged("%s", line)
	}
	return nil
}

// lsubEntries are the subscribed names, and the names above them that
// the pattern matches when none of the subscribed names below does: those
// are returned \Noselect (RFC 3501 6.3.9, LSUB with '%').
func lsubEntries(all []listEntry, pattern string) []listEntry {
	var subs []listEntry
	seen := map[string]bool{}
	for _, e := range all {
		if e.subscribed {
			e.exists = true // LSUB marks only the unsubscribed parents
			subs = append(subs, e)
			seen[e.name] = true
		}
	}
	out := slices.Clone(subs)
	for _, e := range subs {
		parts := strings.Split(e.name, store.Separator)
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], store.Separator)
			if seen[parent] || !matchPattern(pattern, parent) {
				continue
			}
			below := slices.ContainsFunc(subs, func(s listEntry) bool {
				return strings.HasPrefix(s.name, parent+store.Separator) && matchPattern(pattern, s.name)
			})
			if !below {
				seen[parent] = true
				out = append(out, listEntry{name: parent, subscribed: false})
			}
		}
	}
	return out
}

// listPattern reads a list-mailbox argument: atom characters with '%'
// and '*' (RFC 9051 9, list-char).
func listPattern(p *imapwire.Parser) (string, error) {
	var b strings.Builder
	for !p.AtEnd() {
		c := p.Peek()
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '{' || c == '"' || c == '\\' {
			break
		}
		b.WriteByte(c)
		p.Take(string(c))
	}
	if b.Len() == 0 {
		return "", bad("Expected a mailbox pattern")
	}
	return b.String(), nil
}

// listEntries returns every mailbox, and the names above them that do
// not exist, with their attributes, INBOX first.
func (s *session) listEntries() ([]listEntry, error) {
	mbs, err := s.srv.store.ListMailboxes(s.ctx(), s.user.ID)
	if err != nil {
		return nil, err
	}
	subs, err := s.srv.store.Subscriptions(s.ctx(), s.user.ID)
	if err != nil {
		return nil, err
	}
	byName := map[string]*listEntry{}
	var names []string
	add := func(name string) *listEntry {
		if e := byName[name]; e != nil {
			return e
		}
		e := &listEntry{name: name}
		byName[name] = e
		names = append(names, name)
		return e
	}
	for _, mb := range mbs {
		e := add(mb.Name)
		e.exists, e.specialUse, e.subscribed = true, mb.SpecialUse, mb.Subscribed
	}
	for _, mb := range mbs {
		parts := strings.Split(mb.Name, store.Separator)
		for i := 1; i < len(parts); i++ {
			add(strings.Join(parts[:i], store.Separator)).children = true
		}
	}
	for _, sub := range subs {
		if e := byName[sub]; e != nil {
			e.subscribed = true
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == store.Inbox:
			return -1
		case b == store.Inbox:
			return 1
		}
		return strings.Compare(a, b)
	})
	out := make([]listEntry, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	// Subscribed names without a mailbox are listed by LSUB as \Noselect.
	for _, sub := range subs {
		if byName[sub] == nil {
			out = append(out, listEntry{name: sub, subscribed: true})
		}
	}
	return out, nil
}

// matchPattern matches a LIST pattern: '*' matches anything, '%'
// anything but the separator; INBOX without regard to case.
func matchPattern(pattern, name string) bool {
	if up, rest, ok := strings.Cut(pattern, store.Separator); ok && strings.EqualFold(up, store.Inbox) {
		pattern = store.Inbox + store.Separator + rest
	} else if strings.EqualFold(pattern, store.Inbox) {
		pattern = store.Inbox
	}
	return match(pattern, name)
}

func match(p, n string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(n); i >= 0; i-- {
				if match(p[1:], n[i:]) {
					return true
				}
			}
			return false
		case '%':
			for i := 0; i <= len(n); i++ {
				if match(p[1:], n[i:]) {
					return true
				}
				if i < len(n) && n[i] == store.Separator[0] {
					return false
				}
			}
			return false
		}
		if len(n) == 0 || n[0] != p[0] {
			return false
		}
		p, n = p[1:], n[1:]
	}
	return len(n) == 0
}

func cmdStatus(s *session, _ string, p *imapwire.Parser) error {
	name, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.Expect(" ("); err != nil {
		return err
	}
	var items []string
	for !p.Take(")") {
		if len(items) > 0 {
			if err := p.SP(); err != nil {
				return err
			}
		}
		a, err := p.Atom()
		if err != nil {
			return err
		}
		items = append(items, strings.ToUpper(a))
	}
	if err := p.End(); err != nil {
		return err
	}
	st, err := s.srv.store.MailboxStatus(s.ctx(), s.user.ID, name)
	if err != nil {
		return err
	}
	var out []string
	for _, it := range items {
		var v string
		switch it {
		case "MESSAGES":
			v = strconv.Itoa(st.Messages)
		case "UIDNEXT":
			v = strconv.FormatUint(uint64(st.UIDNext), 10)
		case "UIDVALIDITY":
			v = strconv.FormatUint(uint64(st.UIDValidity), 10)
		case "UNSEEN":
			v = strconv.Itoa(st.Unseen)
		case "RECENT":
			v = strconv.Itoa(st.Recent)
		case "SIZE":
			v = strconv.FormatInt(st.Size, 10)
		case "DELETED":
			v = strconv.Itoa(st.Deleted)
		default:
			return bad("Unknown STATUS item %s", clipName(it))
		}
		out = append(out, it+" "+v)
	}
	s.untagged("STATUS %s (%s)", s.wireName(name), strings.Join(out, " "))
	return nil
}
