package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// mailChannel is the channel every node LISTENs on: each transaction that
// changes a user's mail NOTIFYs it, and PostgreSQL delivers the notice to
// every listening connection when (and only if) the transaction commits.
const mailChannel = "mailroom_mail"

// queueChannel is NOTIFYed when queue entries were made due now.
const queueChannel = "mailroom_queue"

// notify announces, within tx, a change to a user's mail (0 for what is
// not known): to the other nodes by NOTIFY ("node user mailbox modseq"),
// and to this node's watchers once tx has committed (run), before the
// call that made the change returns, as the embedded store does.
func (s *Store) notify(ctx context.Context, tx pgx.Tx, userID, mailboxID, modseq int64) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, mailChannel, fmt.Sprintf("%s %d %d %d", s.nodeID, userID, mailboxID, modseq)); err != nil {
		return err
	}
	s.pendMu.Lock()
	s.pending[tx] = append(s.pending[tx], store.MailChange{UserID: userID, MailboxID: mailboxID, HighestModSeq: modseq})
	s.pendMu.Unlock()
	return nil
}

// takePending returns (and forgets) the changes tx announced.
func (s *Store) takePending(tx pgx.Tx) []store.MailChange {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	cs := s.pending[tx]
	delete(s.pending, tx)
	return cs
}

// wake wakes this node's watchers for the changes of a committed
// transaction: one wake-up per user, merged.
func (s *Store) wake(cs []store.MailChange) {
	byUser := map[int64]store.MailChange{}
	var order []int64
	for _, c := range cs {
		if prev, ok := byUser[c.UserID]; ok {
			byUser[c.UserID] = prev.Merge(c)
			continue
		}
		byUser[c.UserID] = c
		order = append(order, c.UserID)
	}
	for _, u := range order {
		s.watchers.Notify(byUser[u])
	}
}

// Watch returns a channel that receives a value after each committed
// change to the user's mailboxes, made by this node or another.
func (s *Store) Watch(userID int64) (<-chan store.MailChange, func()) {
	return s.watchers.Add(userID)
}

// listen holds a connection LISTENing for changes and wakes the watchers,
// until ctx ends. When the connection breaks, every watcher is woken (a
// change may have been missed) and it connects again.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, ready func()) {
	defer close(s.listened)
	first := true
	for delay := 100 * time.Millisecond; ctx.Err() == nil; delay = min(2*delay, 5*time.Second) {
		if s.listenOnce(ctx, cfg, &first, ready) {
			delay = 100 * time.Millisecond
		}
		ready() // Open waits no longer; the listener tries again
		s.watchers.NotifyAll()
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// listenOnce listens on one connection until it fails; it reports whether
// it listened at all.
func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, first *bool, ready func()) bool {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+mailChannel+"; LISTEN "+queueChannel); err != nil {
		return false
	}
	if *first {
		*first = false
		ready() // no one watches yet
	} else {
		s.watchers.NotifyAll() // what changed while no one listened
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true
		}
		if n.Channel == queueChannel {
			if f := s.queueDue.Load(); f != nil {
				(*f)()
			}
			continue
		}
		f := strings.Fields(n.Payload)
		if len(f) != 4 || f[0] == s.nodeID { // this node's own: its watchers know
			continue
		}
		user, err1 := strconv.ParseInt(f[1], 10, 64)
		mailbox, err2 := strconv.ParseInt(f[2], 10, 64)
		modseq, err3 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		s.watchers.Notify(store.MailChange{UserID: user, MailboxID: mailbox, HighestModSeq: modseq})
	}
}
