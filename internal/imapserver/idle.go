package imapserver

import (
	"strings"
	"time"

	"mailroom/internal/imapwire"
	"mailroom/internal/store"
)

func init() {
	commands["IDLE"] = command{states: stateIn, run: cmdIdle}
}

// idleGather is how long IDLE waits after a wake-up for more changes, so
// that a burst (a message and its flags) is reported in one go.
const idleGather = 2 * time.Millisecond

// cmdIdle waits for changes and reports them at once (RFC 2177) until the
// client sends DONE. The store's change feed wakes it; nothing polls.
func cmdIdle(s *session, _ string, p *imapwire.Parser) error {
	if err := p.End(); err != nil {
		return err
	}
	s.w.WriteString("+ idling\r\n")
	if !s.flush() {
		return errConnection
	}
	type line struct {
		text string
		err  error
	}
	lines := make(chan line, 1)
	s.c.ExpectLine(s.cfg.IdleTimeout)
	go func() {
		b, err := s.dec.ReadLine()
		lines <- line{string(b), err}
	}()
	var changes <-chan store.MailChange
	if s.sel != nil {
		changes = s.sel.watch
	}
	var gather <-chan time.Time
	for {
		select {
		case l := <-lines:
			if l.err != nil {
				if s.stopping.Load() {
					s.untagged("BYE [UNAVAILABLE] Server shutting down, try again later")
				} else {
					s.untagged("BYE Autologout: %s", expiredText(s.c.Expired()))
				}
				s.quit = true
				return errSilent
			}
			if !strings.EqualFold(strings.TrimSpace(l.text), "DONE") {
				return bad("Expected DONE to end IDLE")
			}
			return nil
		case ev := <-changes:
			if s.sel.note(ev) && gather == nil {
				gather = time.After(idleGather)
			}
		case <-gather:
			gather = nil
			s.sync(true)
			if s.quit {
				return errSilent
			}
			if !s.flush() {
				return errConnection
			}
			if s.sel == nil {
				changes = nil
			}
		}
	}
}
