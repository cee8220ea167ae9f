package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// MailboxState reads a mailbox's status and its messages' states in one
// transaction's snapshot (REPEATABLE READ).
func (s *Store) MailboxState(ctx context.Context, userID int64, mailbox string) (store.MailboxState, error) {
	st := store.MailboxState{MailboxStatus: store.MailboxStatus{Name: mailbox}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := readStatus(ctx, tx, userID, &st.MailboxStatus); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT uid, modseq, size, flags FROM mailbox_messages WHERE mailbox_id = $1 ORDER BY uid`, st.ID)
		// Most messages share one of a few flag sets: each is split once
		// and its slice shared.
		sets := map[string][]string{}
		var uid, modseq, size int64
		var flags string
		_, err := pgx.ForEachRow(rows, []any{&uid, &modseq, &size, &flags}, func() error {
			set, ok := sets[flags]
			if !ok {
				set = strings.Fields(flags)
				sets[flags] = set
			}
			st.States = append(st.States, store.MessageState{UID: uint32(uid), Flags: set, ModSeq: modseq})
			st.Size += size
			if !slices.Contains(set, store.FlagSeen) {
				st.Unseen++
			}
			if slices.Contains(set, store.FlagDeleted) {
				st.Deleted++
			}
			if uint32(uid) >= st.RecentUID {
				st.Recent++
			}
			return nil
		})
		return err
	})
	st.Messages = len(st.States)
	return st, store.MailError("read mailbox", mailbox, err)
}

// readStatus reads the counters of the mailbox st names (ID, UIDVALIDITY,
// UIDNEXT, HIGHESTMODSEQ, the first recent UID).
func readStatus(ctx context.Context, tx pgx.Tx, userID int64, st *store.MailboxStatus) error {
	var validity, next, recent int64
	err := tx.QueryRow(ctx, `SELECT id, uidvalidity, uidnext, highest_modseq, recent_uid FROM mailboxes WHERE user_id = $1 AND name = $2`,
		userID, st.Name).Scan(&st.ID, &validity, &next, &st.HighestModSeq, &recent)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("mailbox %q: %w", st.Name, store.ErrNotFound)
	}
	st.UIDValidity, st.UIDNext, st.RecentUID = uint32(validity), uint32(next), uint32(recent)
	return err
}

// Changes returns what changed after sinceModSeq.
func (s *Store) Changes(ctx context.Context, userID int64, mailbox string, sinceModSeq int64) (store.Changes, error) {
	c := store.Changes{MailboxStatus: store.MailboxStatus{Name: mailbox}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := readStatus(ctx, tx, userID, &c.MailboxStatus); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT uid, modseq, flags FROM mailbox_messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid`, c.ID, sinceModSeq)
		var uid, modseq int64
		var flags string
		if _, err := pgx.ForEachRow(rows, []any{&uid, &modseq, &flags}, func() error {
			c.Changed = append(c.Changed, store.MessageState{UID: uint32(uid), Flags: strings.Fields(flags), ModSeq: modseq})
			return nil
		}); err != nil {
			return err
		}
		if sinceModSeq == 0 {
			return nil
		}
		rows, _ = tx.Query(ctx, `SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid`, c.ID, sinceModSeq)
		_, err := pgx.ForEachRow(rows, []any{&uid}, func() error {
			c.Vanished = append(c.Vanished, uint32(uid))
			return nil
		})
		return err
	})
	return c, store.MailError("read the changes of", mailbox, err)
}

// uidArray is uids as the int8[] a query's "uid = ANY($n)" takes.
func uidArray(uids []uint32) []int64 {
	out := make([]int64, len(uids))
	for i, u := range uids {
		out[i] = int64(u)
	}
	return out
}

// summaryPage is how many messages Summaries reads per query (see
// readPage: the caller, writing to a client, holds no connection).
const summaryPage = 1000

// Summaries calls fn with what is known of each message of uids without
// its body, in ascending UID order.
func (s *Store) Summaries(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(store.MessageInfo) error) error {
	want := slices.Clone(uids)
	slices.Sort(want)
	want = slices.Compact(want)
	for len(want) > 0 {
		page := want[:min(len(want), summaryPage)]
		want = want[len(page):]
		rows, _ := s.pool.Query(ctx, `SELECT mm.uid, mm.internal_date, mm.size, mm.flags, mm.modseq, ms.summary, mm.prefix
			FROM mailboxes mb JOIN mailbox_messages mm ON mm.mailbox_id = mb.id
			LEFT JOIN message_summaries ms ON ms.message_id = mm.message_id
			WHERE mb.user_id = $1 AND mb.name = $2 AND mm.uid = ANY($3) ORDER BY mm.uid`, userID, mailbox, uidArray(page))
		infos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.MessageInfo, error) {
			mi := store.MessageInfo{UserID: userID, Mailbox: mailbox}
			var uid, date int64
			var flags string
			err := r.Scan(&uid, &date, &mi.Size, &flags, &mi.ModSeq, &mi.Summary, &mi.Prefix)
			mi.UID, mi.Date, mi.Flags, mi.PrefixSize = uint32(uid), time.Unix(0, date), strings.Fields(flags), len(mi.Prefix)
			return mi, err
		})
		if err != nil {
			return store.MailError("read the summaries of", mailbox, err)
		}
		for _, mi := range infos {
			if err := fn(mi); err != nil {
				return err
			}
		}
	}
	return nil
}

// SaveSummary records the summary of a message, replacing an older one.
func (s *Store) SaveSummary(ctx context.Context, userID int64, mailbox string, uid uint32, summary []byte) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO message_summaries(message_id, summary) SELECT mm.message_id, $1
		FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id WHERE mb.user_id = $2 AND mb.name = $3 AND mm.uid = $4
		ON CONFLICT (message_id) DO UPDATE SET summary = excluded.summary`, summary, userID, mailbox, int64(uid))
	return store.MailError("save a summary in", mailbox, err)
}

// Append stores messages in a mailbox atomically.
func (s *Store) Append(ctx context.Context, userID int64, mailbox string, msgs []store.AppendMessage) (store.AppendResult, error) {
	var res store.AppendResult
	// The bodies are read inside the transaction (a large one a chunk at
	// a time): a retry could not read them again, so there is none.
	err := s.run(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		for _, m := range msgs {
			date := m.InternalDate
			if date.IsZero() {
				date = time.Now()
			}
			first, err := io.ReadAll(io.LimitReader(m.Body, chunkSize+1))
			if err != nil {
				return fmt.Errorf("read the message: %w", err)
			}
			msgID, size, err := s.insertMessage(ctx, tx, store.NewQueueID(), date, []byte("{}"), m.From, m.Subject, first, m.Body, m.Summary)
			if err != nil {
				return err
			}
			uid, err := s.insertCopy(ctx, tx, msgID, size, date, store.LocalTarget{UserID: userID, Mailbox: mailbox}, m.Flags)
			if err != nil {
				return err
			}
			res.UIDs = append(res.UIDs, uid)
		}
		var validity int64
		err := tx.QueryRow(ctx, `SELECT uidvalidity FROM mailboxes WHERE user_id = $1 AND name = $2`, userID, mailbox).Scan(&validity)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
		}
		res.UIDValidity = uint32(validity)
		return err
	})
	if err != nil {
		return store.AppendResult{}, store.MailError("append to", mailbox, err)
	}
	return res, nil
}

// SetFlags changes the flags of messages, each under the next MODSEQ.
func (s *Store) SetFlags(ctx context.Context, userID int64, mailbox string, c store.FlagChange) (store.FlagResult, error) {
	var res store.FlagResult
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		res = store.FlagResult{}
		var mboxID, modseq int64
		err := tx.QueryRow(ctx, `SELECT id, highest_modseq FROM mailboxes WHERE user_id = $1 AND name = $2 FOR UPDATE`, userID, mailbox).Scan(&mboxID, &modseq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT uid, flags, modseq FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid`, mboxID, uidArray(c.UIDs))
		type state struct {
			flags  string
			modseq int64
		}
		have := map[uint32]state{}
		var uid, m int64
		var flags string
		if _, err := pgx.ForEachRow(rows, []any{&uid, &flags, &m}, func() error {
			have[uint32(uid)] = state{flags, m}
			return nil
		}); err != nil {
			return err
		}
		for _, uid := range c.UIDs {
			st, ok := have[uid]
			if !ok {
				continue
			}
			if c.UnchangedSince > 0 && st.modseq > c.UnchangedSince {
				res.Modified = append(res.Modified, uid)
				continue
			}
			old := strings.Fields(st.flags)
			now := store.ApplyFlags(old, c.Op, c.Flags)
			if slices.Equal(old, now) {
				continue
			}
			modseq++
			if _, err := tx.Exec(ctx, `UPDATE mailbox_messages SET flags = $1, modseq = $2 WHERE mailbox_id = $3 AND uid = $4`,
				strings.Join(now, " "), modseq, mboxID, int64(uid)); err != nil {
				return err
			}
			have[uid] = state{strings.Join(now, " "), modseq}
			res.Changed = append(res.Changed, store.MessageState{UID: uid, Flags: now, ModSeq: modseq})
		}
		if len(res.Changed) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET highest_modseq = $1 WHERE id = $2`, modseq, mboxID); err != nil {
			return err
		}
		return s.notify(ctx, tx, userID, mboxID, modseq)
	})
	return res, store.MailError("set flags in", mailbox, err)
}

// Copy copies (or moves) messages to another mailbox of the user.
func (s *Store) Copy(ctx context.Context, userID int64, from string, uids []uint32, to string, move bool) (store.CopyResult, error) {
	var res store.CopyResult
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		res = store.CopyResult{}
		var srcID, dstID, dstValidity int64
		// Both mailboxes locked in the order of their IDs.
		rows, _ := tx.Query(ctx, `SELECT id, name, uidvalidity FROM mailboxes WHERE user_id = $1 AND name IN ($2, $3) ORDER BY id FOR UPDATE`, userID, from, to)
		var id, validity int64
		var name string
		if _, err := pgx.ForEachRow(rows, []any{&id, &name, &validity}, func() error {
			if name == from {
				srcID = id
			}
			if name == to {
				dstID, dstValidity = id, validity
			}
			return nil
		}); err != nil {
			return err
		}
		switch {
		case srcID == 0:
			return fmt.Errorf("mailbox %q: %w", from, store.ErrNotFound)
		case dstID == 0:
			return fmt.Errorf("mailbox %q: %w", to, store.ErrNotFound)
		}
		res.UIDValidity = uint32(dstValidity)
		var expungeModSeq int64
		for _, uid := range uids {
			var msgID, size, date int64
			var prefix []byte
			var flags string
			err := tx.QueryRow(ctx, `SELECT message_id, size, internal_date, prefix, flags FROM mailbox_messages WHERE mailbox_id = $1 AND uid = $2`,
				srcID, int64(uid)).Scan(&msgID, &size, &date, &prefix, &flags)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if move {
				// Out of the source first, so that the quota counts the
				// message once while it moves.
				if expungeModSeq == 0 {
					if err := tx.QueryRow(ctx, `UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING highest_modseq`, srcID).Scan(&expungeModSeq); err != nil {
						return err
					}
				}
				if _, err := tx.Exec(ctx, `DELETE FROM mailbox_messages WHERE mailbox_id = $1 AND uid = $2`, srcID, int64(uid)); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO expunged(mailbox_id, uid, modseq) VALUES ($1, $2, $3) ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq`,
					srcID, int64(uid), expungeModSeq); err != nil {
					return err
				}
				if _, _, err := s.addUsed(ctx, tx, userID, -size); err != nil {
					return err
				}
			}
			t := store.LocalTarget{UserID: userID, Mailbox: to, Prefix: prefix}
			newUID, err := s.insertCopy(ctx, tx, msgID, size-int64(len(prefix)), time.Unix(0, date), t, strings.Fields(flags))
			if err != nil {
				return err
			}
			res.From, res.To = append(res.From, uid), append(res.To, newUID)
		}
		if len(res.From) > 0 {
			return s.notify(ctx, tx, userID, 0, 0)
		}
		return nil
	})
	return res, store.MailError("copy from", from, err)
}

// readPage is how many messages ReadMessages reads per query: the rows of
// a page are read and the connection given back before fn sees them, so
// that a slow reader (an IMAP client) never holds a connection, and a
// chunked body's own queries always find one free.
const readPage = 64

// ReadMessages calls fn with each message of uids, in ascending UID order.
func (s *Store) ReadMessages(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(uid uint32, r io.Reader) error) error {
	want := slices.Clone(uids)
	slices.Sort(want)
	want = slices.Compact(want)
	type msg struct {
		uid          uint32
		id           int64
		prefix, body []byte
		chunked      bool
	}
	for len(want) > 0 {
		page := want[:min(len(want), readPage)]
		want = want[len(page):]
		rows, _ := s.pool.Query(ctx, `SELECT mm.uid, m.id, mm.prefix, m.body, m.chunked
			FROM mailboxes mb JOIN mailbox_messages mm ON mm.mailbox_id = mb.id JOIN messages m ON m.id = mm.message_id
			WHERE mb.user_id = $1 AND mb.name = $2 AND mm.uid = ANY($3) ORDER BY mm.uid`, userID, mailbox, uidArray(page))
		msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (msg, error) {
			var m msg
			var uid int64
			err := r.Scan(&uid, &m.id, &m.prefix, &m.body, &m.chunked)
			m.uid = uint32(uid)
			return m, err
		})
		if err != nil {
			return store.MailError("read messages of", mailbox, err)
		}
		for _, m := range msgs {
			var rest io.Reader = bytes.NewReader(m.body)
			if m.chunked {
				rest = s.large.open(ctx, m.id)
			}
			if err := fn(m.uid, io.MultiReader(bytes.NewReader(m.prefix), rest)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ClaimRecent gives the caller the messages no session has claimed yet.
func (s *Store) ClaimRecent(ctx context.Context, userID int64, mailbox string) (uint32, error) {
	var from, next int64
	err := s.pool.QueryRow(ctx, `SELECT recent_uid, uidnext FROM mailboxes WHERE user_id = $1 AND name = $2`, userID, mailbox).Scan(&from, &next)
	if err == nil && from >= next {
		return uint32(from), nil // nothing new since the last claim: no write
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.MailError("claim recent in", mailbox, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound))
	}
	err = s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT recent_uid, uidnext FROM mailboxes WHERE user_id = $1 AND name = $2 FOR UPDATE`, userID, mailbox).Scan(&from, &next); err != nil {
			return err
		}
		if from >= next {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE mailboxes SET recent_uid = uidnext WHERE user_id = $1 AND name = $2`, userID, mailbox)
		return err
	})
	return uint32(from), store.MailError("claim recent in", mailbox, err)
}

// Snapshot returns the snapshot last saved of a mailbox.
func (s *Store) Snapshot(ctx context.Context, userID int64, mailbox string) (store.Snapshot, error) {
	var sn store.Snapshot
	var validity int64
	err := s.pool.QueryRow(ctx, `SELECT mb.id, mb.uidvalidity, ms.modseq, ms.data FROM mailboxes mb JOIN mailbox_snapshots ms ON ms.mailbox_id = mb.id
		WHERE mb.user_id = $1 AND mb.name = $2`, userID, mailbox).Scan(&sn.MailboxID, &validity, &sn.ModSeq, &sn.Data)
	sn.UIDValidity = uint32(validity)
	if errors.Is(err, pgx.ErrNoRows) {
		return sn, fmt.Errorf("snapshot of mailbox %q: %w", mailbox, store.ErrNotFound)
	}
	if err != nil {
		return sn, fmt.Errorf("store: read the snapshot of %q: %w", mailbox, err)
	}
	return sn, nil
}

// Snapshots calls fn with the snapshots saved, the most recently saved
// first, until fn returns false.
func (s *Store) Snapshots(ctx context.Context, fn func(userID int64, mailbox string, sn store.Snapshot) bool) error {
	rows, _ := s.pool.Query(ctx, `SELECT mb.user_id, mb.name, mb.id, mb.uidvalidity, ms.modseq, ms.data
		FROM mailbox_snapshots ms JOIN mailboxes mb ON mb.id = ms.mailbox_id ORDER BY ms.saved DESC`)
	defer rows.Close()
	for rows.Next() {
		var userID, validity int64
		var name string
		var sn store.Snapshot
		if err := rows.Scan(&userID, &name, &sn.MailboxID, &validity, &sn.ModSeq, &sn.Data); err != nil {
			return fmt.Errorf("store: list the snapshots: %w", err)
		}
		sn.UIDValidity = uint32(validity)
		if !fn(userID, name, sn) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: list the snapshots: %w", err)
	}
	return nil
}

// SaveSnapshot keeps a mailbox's snapshot unless a later one is there (one
// beyond the mailbox's HIGHESTMODSEQ is not believed).
func (s *Store) SaveSnapshot(ctx context.Context, userID int64, sn store.Snapshot) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO mailbox_snapshots(mailbox_id, modseq, data, saved)
		SELECT id, $1, $2, nextval('mailbox_snapshots_saved') FROM mailboxes WHERE id = $3 AND user_id = $4
		ON CONFLICT (mailbox_id) DO UPDATE SET modseq = excluded.modseq, data = excluded.data, saved = excluded.saved
		WHERE excluded.modseq >= mailbox_snapshots.modseq
			OR mailbox_snapshots.modseq > (SELECT highest_modseq FROM mailboxes WHERE id = mailbox_snapshots.mailbox_id)`,
		sn.ModSeq, sn.Data, sn.MailboxID, userID)
	if err != nil {
		return fmt.Errorf("store: save the snapshot of mailbox %d: %w", sn.MailboxID, err)
	}
	return nil
}
