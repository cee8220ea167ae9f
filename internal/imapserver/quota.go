package imapserver

import "mailroom/internal/imapwire"

func init() {
	commands["GETQUOTAROOT"] = command{states: stateIn, run: cmdGetQuotaRoot}
	commands["GETQUOTA"] = command{states: stateIn, run: cmdGetQuota}
	commands["SETQUOTA"] = command{states: stateIn, run: cmdSetQuota}
}

// A user's quota covers all their mailboxes: one quota root, "" (RFC 9208),
// with one resource, STORAGE, counted in units of 1024 octets.

func cmdGetQuotaRoot(s *session, _ string, p *imapwire.Parser) error {
	name, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	if _, err := s.srv.store.Mailbox(s.ctx(), s.user.ID, name); err != nil {
		return err
	}
	u, err := s.srv.store.User(s.ctx(), s.user.Address)
	if err != nil {
		return err
	}
	mbox := s.wireName(name)
	if u.Quota <= 0 {
		s.untagged("QUOTAROOT %s", mbox) // no quota: no root
		return nil
	}
	s.untagged(`QUOTAROOT %s ""`, mbox)
	s.untagged(`QUOTA "" (STORAGE %d %d)`, (u.UsedBytes+1023)/1024, u.Quota/1024)
	return nil
}

func cmdGetQuota(s *session, _ string, p *imapwire.Parser) error {
	if err := p.SP(); err != nil {
		return err
	}
	root, err := p.AString()
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	u, err := s.srv.store.User(s.ctx(), s.user.Address)
	if err != nil {
		return err
	}
	if root != "" || u.Quota <= 0 {
		return no("[NONEXISTENT]", "No such quota root")
	}
	s.untagged(`QUOTA "" (STORAGE %d %d)`, (u.UsedBytes+1023)/1024, u.Quota/1024)
	return nil
}

// cmdSetQuota refuses: QUOTASET is not announced, quotas are the
// administrator's (mailbox.quota, user add --quota).
func cmdSetQuota(s *session, _ string, _ *imapwire.Parser) error {
	return no("[NOPERM]", "Quotas are set by the server's administrator")
}
