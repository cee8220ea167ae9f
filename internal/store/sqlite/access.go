package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/store"
)

// MailboxState reads a mailbox's status and its messages' states in one
// statement, so one snapshot. The messages come as one text (a line per
// message, in UID order) rather than a row each: through database/sql a
// row costs about a microsecond and a half, which made SELECT of a
// 100,000-message mailbox take 190 ms.
func (s *Store) MailboxState(ctx context.Context, userID int64, mailbox string) (store.MailboxState, error) {
	st := store.MailboxState{MailboxStatus: store.MailboxStatus{Name: mailbox}}
	var list sql.NullString
	err := s.queryRow(ctx, `SELECT mb.id, mb.uidvalidity, mb.uidnext, mb.highest_modseq, mb.recent_uid,
		(SELECT group_concat(mm.uid || char(9) || mm.modseq || char(9) || mm.size || char(9) || mm.flags, char(10))
			FROM mailbox_messages mm WHERE mm.mailbox_id = mb.id)
		FROM mailboxes mb WHERE mb.user_id = ? AND mb.name = ?`, userID, mailbox).
		Scan(&st.ID, &st.UIDValidity, &st.UIDNext, &st.HighestModSeq, &st.RecentUID, &list)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
	}
	if err != nil {
		return st, fmt.Errorf("store: read mailbox %q: %w", mailbox, err)
	}
	if st.States, err = parseStates(list.String, &st.MailboxStatus); err != nil {
		return st, fmt.Errorf("store: read mailbox %q: %w", mailbox, err)
	}
	sortByUID(st.States, func(m store.MessageState) uint32 { return m.UID })
	st.Messages = len(st.States)
	return st, nil
}

// parseStates reads MailboxState's lines ("uid TAB modseq TAB size TAB
// flags") and counts into st. Most messages share one of a few flag sets:
// each is split once and its slice shared.
func parseStates(list string, st *store.MailboxStatus) ([]store.MessageState, error) {
	if list == "" {
		return nil, nil
	}
	states := make([]store.MessageState, 0, strings.Count(list, "\n")+1)
	sets := map[string][]string{}
	for line := range strings.SplitSeq(list, "\n") {
		uid, rest, ok1 := strings.Cut(line, "\t")
		modseq, rest, ok2 := strings.Cut(rest, "\t")
		size, flags, ok3 := strings.Cut(rest, "\t")
		u, err1 := strconv.ParseUint(uid, 10, 32)
		m, err2 := strconv.ParseInt(modseq, 10, 64)
		n, err3 := strconv.ParseInt(size, 10, 64)
		if !ok1 || !ok2 || !ok3 || err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("a message's state reads %q", line)
		}
		set, ok := sets[flags]
		if !ok {
			// A copy: a slice of list would keep all of it alive as long as
			// the session that holds the states.
			c := strings.Clone(flags)
			set = strings.Fields(c)
			sets[c] = set
		}
		states = append(states, store.MessageState{UID: uint32(u), Flags: set, ModSeq: m})
		st.Size += n
		if !slices.Contains(set, store.FlagSeen) {
			st.Unseen++
		}
		if slices.Contains(set, store.FlagDeleted) {
			st.Deleted++
		}
		if uint32(u) >= st.RecentUID {
			st.Recent++
		}
	}
	return states, nil
}

// sortByUID puts rows read in one text in UID order. The text comes in
// the primary key's order already (its rows are read that way): asking
// SQLite's group_concat for an ORDER BY made it copy them all through a
// sorter (a third of SORT's time on 100,000 messages), so the order is
// only checked here.
func sortByUID[T any](rows []T, uid func(T) uint32) {
	by := func(a, b T) int { return cmp.Compare(uid(a), uid(b)) }
	if !slices.IsSortedFunc(rows, by) {
		slices.SortFunc(rows, by)
	}
}

// Changes returns what changed after sinceModSeq, in one statement.
func (s *Store) Changes(ctx context.Context, userID int64, mailbox string, sinceModSeq int64) (store.Changes, error) {
	c := store.Changes{MailboxStatus: store.MailboxStatus{Name: mailbox}}
	rows, err := s.feed.query(ctx, `WITH mb AS (SELECT id, uidvalidity, uidnext, highest_modseq, recent_uid FROM mailboxes WHERE user_id = ? AND name = ?)
		SELECT 0, mb.id, mb.uidvalidity, mb.uidnext, mb.highest_modseq, 0, mb.recent_uid FROM mb
		UNION ALL
		SELECT 1, mm.uid, 0, 0, mm.modseq, 0, mm.flags FROM mailbox_messages mm, mb WHERE mm.mailbox_id = mb.id AND mm.modseq > ?
		UNION ALL
		SELECT 2, e.uid, 0, 0, e.modseq, 0, '' FROM expunged e, mb WHERE e.mailbox_id = mb.id AND e.modseq > ? AND ? > 0
		ORDER BY 1, 2`, userID, mailbox, sinceModSeq, sinceModSeq, sinceModSeq)
	if err != nil {
		return c, fmt.Errorf("store: changes of %q: %w", mailbox, err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var kind int
		var a, b, cc, modseq, n int64
		var flags string
		if err := rows.Scan(&kind, &a, &b, &cc, &modseq, &n, &flags); err != nil {
			return c, fmt.Errorf("store: changes of %q: %w", mailbox, err)
		}
		switch kind {
		case 0:
			found = true
			c.ID, c.UIDValidity, c.UIDNext, c.HighestModSeq = a, uint32(b), uint32(cc), modseq
			recent, _ := strconv.ParseUint(flags, 10, 32)
			c.RecentUID = uint32(recent)
		case 1:
			c.Changed = append(c.Changed, store.MessageState{UID: uint32(a), Flags: strings.Fields(flags), ModSeq: modseq})
		case 2:
			c.Vanished = append(c.Vanished, uint32(a))
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("store: changes of %q: %w", mailbox, err)
	}
	if !found {
		return c, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
	}
	return c, nil
}

// Summaries calls fn with what is known of each message of uids without
// its body, in ascending UID order.
func (s *Store) Summaries(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(store.MessageInfo) error) error {
	if len(uids) == 0 {
		return nil
	}
	want := slices.Clone(uids)
	slices.Sort(want)
	which, arg := uidSet(want)
	args := append([]any{userID, mailbox}, arg...)
	rows, err := s.query(ctx, `SELECT mm.uid, mm.internal_date, mm.size, mm.flags, mm.modseq, ms.summary, mm.prefix
		FROM mailboxes mb JOIN mailbox_messages mm ON mm.mailbox_id = mb.id
		LEFT JOIN message_summaries ms ON ms.message_id = mm.message_id
		WHERE mb.user_id = ? AND mb.name = ? AND `+which+` ORDER BY mm.uid`, args...)
	if err != nil {
		return fmt.Errorf("store: summaries of %q: %w", mailbox, err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		mi := store.MessageInfo{UserID: userID, Mailbox: mailbox}
		var date int64
		var flags string
		if err := rows.Scan(&mi.UID, &date, &mi.Size, &flags, &mi.ModSeq, &mi.Summary, &mi.Prefix); err != nil {
			return fmt.Errorf("store: summaries of %q: %w", mailbox, err)
		}
		for i < len(want) && want[i] < mi.UID {
			i++
		}
		if i == len(want) {
			break
		}
		if want[i] != mi.UID {
			continue
		}
		mi.Date, mi.Flags, mi.PrefixSize = time.Unix(0, date), strings.Fields(flags), len(mi.Prefix)
		if err := fn(mi); err != nil {
			return err
		}
	}
	return rows.Err()
}

// SaveSummary records the summary of a message, replacing an older one.
func (s *Store) SaveSummary(ctx context.Context, userID int64, mailbox string, uid uint32, summary []byte) error {
	err := s.writeLazy(ctx, false, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT OR REPLACE INTO message_summaries(message_id, summary) SELECT mm.message_id, ?
			FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id WHERE mb.user_id = ? AND mb.name = ? AND mm.uid = ?`,
			summary, userID, mailbox, uid)
		return err
	})
	return store.MailError("save summary", mailbox, err)
}

// Append stores messages in a mailbox atomically.
func (s *Store) Append(ctx context.Context, userID int64, mailbox string, msgs []store.AppendMessage) (store.AppendResult, error) {
	type staged struct {
		inline []byte
		file   string
		size   int64
	}
	var st []staged
	removeFiles := func() {
		for _, b := range st {
			if b.file != "" {
				os.Remove(filepath.Join(s.dir, "blobs", b.file))
			}
		}
	}
	defer func() {
		for _, b := range st {
			releaseBody(b.inline)
		}
	}()
	for _, m := range msgs {
		inline, file, size, err := s.stageBody(m.Body, m.Size)
		if err != nil {
			removeFiles()
			return store.AppendResult{}, store.MailError("append to", mailbox, err)
		}
		st = append(st, staged{inline, file, size})
	}
	var res store.AppendResult
	err := s.writeCounted(ctx, func(tx *wtx) error {
		res = store.AppendResult{}
		var used int64
		for i, m := range msgs {
			date := m.InternalDate
			if date.IsZero() {
				date = time.Now()
			}
			msgID, err := tx.nextID(seqMessages)
			if err != nil {
				return err
			}
			if err := tx.insertMessage(msgID, store.NewQueueID(), date.UnixNano(), st[i].size, "{}",
				m.From, m.Subject, st[i].inline, st[i].file, m.Summary); err != nil {
				return err
			}
			var uid uint32
			uid, used, err = insertCopyUID(tx, msgID, st[i].size, date, store.LocalTarget{UserID: userID, Mailbox: mailbox}, m.Flags)
			if err != nil {
				return err
			}
			res.UIDs = append(res.UIDs, uid)
		}
		mb, err := tx.mailbox(userID, mailbox)
		if err != nil {
			return err
		}
		tx.changedMessages(userID, mb)
		res.UIDValidity, err = uidValidity(tx, mb.id)
		if err == nil {
			tx.onCommit(func() { s.dircache.setUsed(userID, used) })
		}
		return err
	})
	if err != nil {
		removeFiles()
		return res, store.MailError("append to", mailbox, err)
	}
	return res, nil
}

func uidValidity(tx *wtx, mailboxID int64) (uint32, error) {
	var v uint32
	err := tx.QueryRow(`SELECT uidvalidity FROM mailboxes WHERE id = ?`, mailboxID).Scan(&v)
	return v, err
}

// SetFlags changes the flags of messages, each under the next MODSEQ.
func (s *Store) SetFlags(ctx context.Context, userID int64, mailbox string, c store.FlagChange) (store.FlagResult, error) {
	var res store.FlagResult
	err := s.writeLazy(ctx, true, func(tx *wtx) error {
		res = store.FlagResult{}
		mb, err := tx.mailbox(userID, mailbox)
		if err != nil {
			return err
		}
		for _, uid := range c.UIDs {
			var flags string
			var modseq int64
			err := tx.QueryRow(sqlFlagsOf, mb.id, uid).Scan(&flags, &modseq)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if c.UnchangedSince > 0 && modseq > c.UnchangedSince {
				res.Modified = append(res.Modified, uid)
				continue
			}
			old := strings.Fields(flags)
			now := store.ApplyFlags(old, c.Op, c.Flags)
			if slices.Equal(old, now) {
				continue
			}
			_, modseq, err = tx.nextModSeq(userID, mailbox)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(sqlSetFlags, strings.Join(now, " "), modseq, mb.id, uid); err != nil {
				return err
			}
			res.Changed = append(res.Changed, store.MessageState{UID: uid, Flags: now, ModSeq: modseq})
		}
		if len(res.Changed) > 0 {
			tx.changedMessages(userID, mb)
		}
		return nil
	})
	return res, store.MailError("set flags in", mailbox, err)
}

// Copy copies (or moves) messages to another mailbox of the user.
func (s *Store) Copy(ctx context.Context, userID int64, from string, uids []uint32, to string, move bool) (store.CopyResult, error) {
	var res store.CopyResult
	err := s.writeCounted(ctx, func(tx *wtx) error {
		res = store.CopyResult{}
		src, err := tx.mailbox(userID, from)
		if err != nil {
			return err
		}
		dst, err := tx.mailbox(userID, to)
		if err != nil {
			return err
		}
		var expungeModSeq int64
		var used int64
		for _, uid := range uids {
			var msgID, size, date int64
			var prefix []byte
			var flags string
			err := tx.QueryRow(`SELECT message_id, size, internal_date, prefix, flags FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?`,
				src.id, uid).Scan(&msgID, &size, &date, &prefix, &flags)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if move {
				// Out of the source first, so that the quota counts the
				// message once while it moves.
				if expungeModSeq == 0 {
					if _, expungeModSeq, err = tx.nextModSeq(userID, from); err != nil {
						return err
					}
				}
				if err := expungeOne(tx, src.id, uid, expungeModSeq); err != nil {
					return err
				}
				if used, _, err = tx.addUsed(userID, -size); err != nil {
					return err
				}
			}
			t := store.LocalTarget{UserID: userID, Mailbox: to, Prefix: prefix}
			newUID, u, err := insertCopyUID(tx, msgID, size-int64(len(prefix)), time.Unix(0, date), t, strings.Fields(flags))
			if err != nil {
				return err
			}
			used = u
			res.From, res.To = append(res.From, uid), append(res.To, newUID)
		}
		if len(res.From) > 0 {
			tx.changed(userID, 0)
			tx.onCommit(func() { s.dircache.setUsed(userID, used) })
		}
		res.UIDValidity, err = uidValidity(tx, dst.id)
		return err
	})
	return res, store.MailError("copy from", from, err)
}

// expungeOne removes one message's row from a mailbox and leaves its
// tombstone; the body stays (the caller copies it, or drops it with
// deleteUnreferenced).
func expungeOne(tx *wtx, mailboxID int64, uid uint32, modseq int64) error {
	if _, err := tx.Exec(`DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?`, mailboxID, uid); err != nil {
		return err
	}
	_, err := tx.Exec(`INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)`, mailboxID, uid, modseq)
	return err
}

// ClaimRecent gives the caller the messages no session has claimed yet.
func (s *Store) ClaimRecent(ctx context.Context, userID int64, mailbox string) (uint32, error) {
	var from, next uint32
	// Nothing new since the last claim (most SELECTs): no write.
	err := s.feed.queryRow(ctx, `SELECT recent_uid, uidnext FROM mailboxes WHERE user_id = ? AND name = ?`, userID, mailbox).Scan(&from, &next)
	if err == nil && from >= next {
		return from, nil
	}
	err = s.writeLazy(ctx, true, func(tx *wtx) error {
		mb, err := tx.mailbox(userID, mailbox)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(`SELECT recent_uid FROM mailboxes WHERE id = ?`, mb.id).Scan(&from); err != nil {
			return err
		}
		if from < mb.uidnext {
			_, err = tx.Exec(`UPDATE mailboxes SET recent_uid = ? WHERE id = ?`, mb.uidnext, mb.id)
		}
		return err
	})
	return from, store.MailError("claim recent in", mailbox, err)
}

// Snapshot returns the snapshot last saved of a mailbox.
func (s *Store) Snapshot(ctx context.Context, userID int64, mailbox string) (store.Snapshot, error) {
	var sn store.Snapshot
	err := s.queryRow(ctx, `SELECT mb.id, mb.uidvalidity, ms.modseq, ms.data FROM mailboxes mb JOIN mailbox_snapshots ms ON ms.mailbox_id = mb.id
		WHERE mb.user_id = ? AND mb.name = ?`, userID, mailbox).Scan(&sn.MailboxID, &sn.UIDValidity, &sn.ModSeq, &sn.Data)
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := s.query(ctx, `SELECT mb.user_id, mb.name, mb.id, mb.uidvalidity, ms.modseq, ms.data
		FROM mailbox_snapshots ms JOIN mailboxes mb ON mb.id = ms.mailbox_id ORDER BY ms.saved DESC`)
	if err != nil {
		return fmt.Errorf("store: list the snapshots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			userID int64
			name   string
			sn     store.Snapshot
		)
		if err := rows.Scan(&userID, &name, &sn.MailboxID, &sn.UIDValidity, &sn.ModSeq, &sn.Data); err != nil {
			return fmt.Errorf("store: list the snapshots: %w", err)
		}
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
	err := s.writeLazy(ctx, false, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO mailbox_snapshots(mailbox_id, modseq, data, saved) SELECT id, ?, ?, (SELECT coalesce(max(saved), 0) + 1 FROM mailbox_snapshots) FROM mailboxes WHERE id = ? AND user_id = ?
			ON CONFLICT(mailbox_id) DO UPDATE SET modseq = excluded.modseq, data = excluded.data, saved = excluded.saved
			WHERE excluded.modseq >= mailbox_snapshots.modseq
				OR mailbox_snapshots.modseq > (SELECT highest_modseq FROM mailboxes WHERE id = mailbox_snapshots.mailbox_id)`,
			sn.ModSeq, sn.Data, sn.MailboxID, userID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: save the snapshot of mailbox %d: %w", sn.MailboxID, err)
	}
	return nil
}
