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

func cmdStatus(s *session, _ string, p *imapwire.Parser) error {
	name, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.SP(); err != nil {
		return err
	}
	items, err := statusItems(p)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	return s.status(name, items)
}

// statusItems reads a parenthesized list of STATUS items.
func statusItems(p *imapwire.Parser) ([]string, error) {
	if err := p.Expect("("); err != nil {
		return nil, err
	}
	var items []string
	for !p.Take(")") {
		if len(items) > 0 {
			if err := p.SP(); err != nil {
				return nil, err
			}
		}
		a, err := p.Atom()
		if err != nil {
			return nil, err
		}
		it := strings.ToUpper(a)
		switch it {
		case "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "SIZE", "DELETED", "HIGHESTMODSEQ":
		default:
			return nil, bad("Unknown STATUS item %s", clipName(a))
		}
		items = append(items, it)
	}
	return items, nil
}

// status writes the STATUS response of a mailbox.
func (s *session) status(name string, items []string) error {
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
		case "HIGHESTMODSEQ":
			v = strconv.FormatInt(st.HighestModSeq, 10)
			s.enableCondstore()
		}
		out = append(out, it+" "+v)
	}
	s.untagged("STATUS %s (%s)", s.wireName(name), strings.Join(out, " "))
	return nil
}
