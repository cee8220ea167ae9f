package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mailroom/internal/store"
)

// chunkSize is the most of a body kept in its message's row, and the size
// of each chunk of a larger one: a body is read and written a chunk at a
// time, never whole in memory.
const chunkSize = 1 << 20

// Accept commits a message and its mailbox copies and queue entries in
// one transaction: when it returns nil, PostgreSQL has them on stable
// storage (synchronous_commit), and concurrent Accepts share the WAL's
// flushes (PostgreSQL's own group commit).
func (s *Store) Accept(ctx context.Context, m *store.Message) error {
	env, err := json.Marshal(m.SMTPEnvelope)
	if err != nil {
		return fmt.Errorf("store: encode envelope: %w", err)
	}
	received := m.Received
	if received.IsZero() {
		received = time.Now()
	}
	// Targets are taken in one order (user, then mailbox name), each
	// locking its mailbox's row, then its user's (as Expunge does), so that
	// two deliveries to the same mailboxes cannot wait on each other. (A
	// message for two mailboxes of one user beside another for the second
	// of them can: PostgreSQL then aborts one, which retry runs again.)
	targets := slices.Clone(m.Local)
	slices.SortStableFunc(targets, func(a, b store.LocalTarget) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), strings.Compare(a.Mailbox, b.Mailbox))
	})
	// The body up to a chunk (and one octet more, to know a larger one).
	first, err := io.ReadAll(io.LimitReader(m.Body, chunkSize+1))
	if err != nil {
		return fmt.Errorf("store: accept %s: read the body: %w", m.QueueID, err)
	}
	accept := func(tx pgx.Tx) error {
		msgID, size, err := s.insertMessage(ctx, tx, m.QueueID, received, env, m.From, m.Subject, first, m.Body, m.Summary)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if _, err := s.insertCopy(ctx, tx, msgID, size, received, t, nil); err != nil {
				return err
			}
		}
		for _, r := range m.Remote {
			if _, err := tx.Exec(ctx, `INSERT INTO queue(message_id, address, domain, notify, orcpt, state, next_attempt, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`,
				msgID, r.Address, strings.ToLower(r.Domain), strings.Join(r.Notify, ","), r.ORcpt, store.StatePending, received.UnixNano()); err != nil {
				return err
			}
		}
		if m.Log != nil {
			return insertLog(ctx, tx, m.Log, received, m.Events)
		}
		return insertEvents(ctx, tx, m.Events, received)
	}
	if len(first) <= chunkSize {
		err = s.retry(ctx, pgx.ReadCommitted, accept)
	} else {
		// The rest of a large body is read inside the transaction: it
		// cannot be read again for a retry.
		err = s.run(ctx, pgx.ReadCommitted, accept)
	}
	if err != nil {
		var qe *store.QuotaError
		if !errors.Is(err, store.ErrNotFound) && !errors.As(err, &qe) {
			err = fmt.Errorf("%w: %w", store.ErrStorage, err)
		}
		return fmt.Errorf("store: accept %s: %w", m.QueueID, err)
	}
	return nil
}

// insertMessage stores a message's row and body: first is the body's
// start as read (up to chunkSize+1 octets), rest what follows; a body of
// up to chunkSize octets is kept in the row, a larger one in chunks. It
// returns the message's ID and the body's size.
func (s *Store) insertMessage(ctx context.Context, tx pgx.Tx, queueID string, received time.Time, env []byte, from, subject string, first []byte, rest io.Reader, summary []byte) (int64, int64, error) {
	var msgID int64
	chunked := len(first) > chunkSize
	inline := first
	if chunked {
		inline = nil
	}
	if err := tx.QueryRow(ctx, `INSERT INTO messages(queue_id, received, size, envelope, from_hdr, subject, body, chunked)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		queueID, received.UnixNano(), int64(len(first)), env, from, subject, inline, chunked).Scan(&msgID); err != nil {
		return 0, 0, err
	}
	size := int64(len(first))
	if chunked {
		var err error
		if size, err = s.large.put(ctx, tx, msgID, first, rest); err != nil {
			return 0, 0, err
		}
		if _, err := tx.Exec(ctx, `UPDATE messages SET size = $1 WHERE id = $2`, size, msgID); err != nil {
			return 0, 0, err
		}
	}
	if len(summary) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO message_summaries(message_id, summary) VALUES ($1, $2)`, msgID, summary); err != nil {
			return 0, 0, err
		}
	}
	return msgID, size, nil
}

// largeBodies keeps the bodies larger than chunkSize, which the messages
// row does not hold. chunks, the default, keeps them in message_chunks
// within the message's own transaction; an S3-compatible object store can
// take its place (put before the transaction commits, open by the
// message's ID, the objects of deleted messages removed by a sweep).
type largeBodies interface {
	// put writes a body: first (already read, chunkSize+1 octets), then
	// the rest of r; it returns the body's size.
	put(ctx context.Context, tx pgx.Tx, msgID int64, first []byte, r io.Reader) (int64, error)
	// open reads a body put before.
	open(ctx context.Context, msgID int64) io.Reader
}

// chunks keeps large bodies in message_chunks, chunkSize octets a row,
// removed with their message (ON DELETE CASCADE).
type chunks struct{ pool *pgxpool.Pool }

func (c chunks) open(ctx context.Context, msgID int64) io.Reader {
	return &chunkReader{pool: c.pool, ctx: ctx, msgID: msgID}
}

// put writes a large body a chunk at a time.
func (chunks) put(ctx context.Context, tx pgx.Tx, msgID int64, first []byte, r io.Reader) (int64, error) {
	buf := make([]byte, chunkSize)
	copy(buf, first[:chunkSize])
	pending := first[chunkSize:] // the one octet read past the first chunk
	n, size := chunkSize, int64(0)
	for seq := 0; ; seq++ {
		if _, err := tx.Exec(ctx, `INSERT INTO message_chunks(message_id, seq, data) VALUES ($1, $2, $3)`, msgID, seq, buf[:n]); err != nil {
			return 0, err
		}
		size += int64(n)
		k := copy(buf, pending)
		pending = nil
		m, err := io.ReadFull(r, buf[k:])
		n = k + m
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if n > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO message_chunks(message_id, seq, data) VALUES ($1, $2, $3)`, msgID, seq+1, buf[:n]); err != nil {
					return 0, err
				}
				size += int64(n)
			}
			return size, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read the body: %w", err)
		}
	}
}

// insertCopy puts one copy of a message into a user's mailbox under the
// next UID and MODSEQ, with flags, and returns the UID. It fails with a
// *store.QuotaError rather than go over the user's quota.
func (s *Store) insertCopy(ctx context.Context, tx pgx.Tx, msgID, bodySize int64, received time.Time, t store.LocalTarget, flags []string) (uint32, error) {
	var mboxID, uid, modseq int64
	err := tx.QueryRow(ctx, `UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1
		WHERE user_id = $1 AND name = $2 RETURNING id, uidnext - 1, highest_modseq`, t.UserID, t.Mailbox).Scan(&mboxID, &uid, &modseq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("mailbox %q of user %d: %w", t.Mailbox, t.UserID, store.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	size := bodySize + int64(len(t.Prefix))
	prefix := t.Prefix
	if prefix == nil {
		prefix = []byte{} // bytea NOT NULL: an empty prefix, not none
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mailbox_messages(mailbox_id, uid, message_id, prefix, size, internal_date, modseq, flags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		mboxID, uid, msgID, prefix, size, received.UnixNano(), modseq, strings.Join(flags, " ")); err != nil {
		return 0, err
	}
	used, quota, err := s.addUsed(ctx, tx, t.UserID, size)
	if err != nil {
		return 0, err
	}
	if err := s.notify(ctx, tx, t.UserID, mboxID, modseq); err != nil {
		return 0, err
	}
	if quota > 0 && used > quota {
		return 0, &store.QuotaError{UserID: t.UserID, Used: used - size, Quota: quota, Size: size}
	}
	return uint32(uid), nil
}

// addUsed adds size to a user's used bytes; it returns the new figure and
// the quota in force (0 or less: none).
func (s *Store) addUsed(ctx context.Context, tx pgx.Tx, userID, size int64) (used, quota int64, err error) {
	err = tx.QueryRow(ctx, `UPDATE users SET used_bytes = used_bytes + $1 WHERE id = $2 RETURNING used_bytes, quota_bytes`, size, userID).Scan(&used, &quota)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("user %d: %w", userID, store.ErrNotFound)
	}
	if quota == 0 {
		quota = s.defaultQuota.Load()
	}
	return used, quota, err
}

// Expunge removes messages from a mailbox for good: their copies, the
// space they took, and each body no other copy or waiting queue entry
// uses. It returns the UIDs removed, in the order given.
func (s *Store) Expunge(ctx context.Context, userID int64, mailbox string, uids []uint32) ([]uint32, error) {
	var removed []uint32
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		removed = removed[:0]
		// One MODSEQ for everything this expunge removes (RFC 7162 3.2.10).
		var mboxID, modseq int64
		err := tx.QueryRow(ctx, `UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE user_id = $1 AND name = $2 RETURNING id, highest_modseq`,
			userID, mailbox).Scan(&mboxID, &modseq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("mailbox %q of user %d: %w", mailbox, userID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var ids []int64
		var freed int64
		for _, uid := range uids {
			var msgID, size int64
			err := tx.QueryRow(ctx, `DELETE FROM mailbox_messages WHERE mailbox_id = $1 AND uid = $2 RETURNING message_id, size`, mboxID, uid).Scan(&msgID, &size)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO expunged(mailbox_id, uid, modseq) VALUES ($1, $2, $3) ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq`,
				mboxID, uid, modseq); err != nil {
				return err
			}
			removed, ids, freed = append(removed, uid), append(ids, msgID), freed+size
		}
		if freed > 0 {
			if _, _, err := s.addUsed(ctx, tx, userID, -freed); err != nil {
				return err
			}
			if err := s.notify(ctx, tx, userID, mboxID, modseq); err != nil {
				return err
			}
		}
		return deleteUnreferenced(ctx, tx, ids)
	})
	if err != nil {
		return nil, fmt.Errorf("store: expunge from %q of user %d: %w", mailbox, userID, err)
	}
	return removed, nil
}

// deleteUnreferenced deletes the messages of ids that no copy and no
// waiting queue entry uses any more (their chunks and summaries go with
// them). Each message's row is locked first, so that two transactions
// removing its last two copies cannot both think the other keeps it.
func deleteUnreferenced(ctx context.Context, tx pgx.Tx, ids []int64) error {
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		var used bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailbox_messages WHERE message_id = $1)
			OR EXISTS (SELECT 1 FROM queue WHERE message_id = $1 AND state IN ('pending', 'deferred'))
			FROM messages WHERE id = $1 FOR UPDATE`, id).Scan(&used)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && used {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM queue WHERE message_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE id = $1`, id); err != nil {
			return err
		}
	}
	return nil
}

// Messages lists a mailbox in UID order.
func (s *Store) Messages(ctx context.Context, userID int64, mailbox string) ([]store.MessageInfo, error) {
	rows, _ := s.pool.Query(ctx, `SELECT mm.uid, m.queue_id, mm.internal_date, mm.size, mm.flags, mm.modseq, m.from_hdr, m.subject
		FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id JOIN messages m ON m.id = mm.message_id
		WHERE mb.user_id = $1 AND mb.name = $2 ORDER BY mm.uid`, userID, mailbox)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.MessageInfo, error) {
		mi := store.MessageInfo{UserID: userID, Mailbox: mailbox}
		var uid, date int64
		var flags string
		err := r.Scan(&uid, &mi.QueueID, &date, &mi.Size, &flags, &mi.ModSeq, &mi.From, &mi.Subject)
		mi.UID, mi.Date, mi.Flags = uint32(uid), time.Unix(0, date), strings.Fields(flags)
		return mi, err
	})
}

// OpenMessage returns the stored message: its per-copy prefix, then the
// body, read a chunk at a time when it is large.
func (s *Store) OpenMessage(ctx context.Context, userID int64, mailbox string, uid uint32) (io.ReadCloser, store.MessageInfo, error) {
	mi := store.MessageInfo{UserID: userID, Mailbox: mailbox, UID: uid}
	var msgID, date int64
	var flags string
	var prefix, body, env []byte
	var chunked bool
	err := s.pool.QueryRow(ctx, `SELECT m.id, m.queue_id, mm.internal_date, mm.size, mm.flags, mm.modseq, m.from_hdr, m.subject, m.envelope, mm.prefix, m.body, m.chunked
		FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id JOIN messages m ON m.id = mm.message_id
		WHERE mb.user_id = $1 AND mb.name = $2 AND mm.uid = $3`, userID, mailbox, int64(uid)).
		Scan(&msgID, &mi.QueueID, &date, &mi.Size, &flags, &mi.ModSeq, &mi.From, &mi.Subject, &env, &prefix, &body, &chunked)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, mi, fmt.Errorf("message %d in %s: %w", uid, mailbox, store.ErrNotFound)
	}
	if err == nil {
		err = json.Unmarshal(env, &mi.SMTPEnvelope)
	}
	if err != nil {
		return nil, mi, fmt.Errorf("store: open message: %w", err)
	}
	mi.Date, mi.Flags = time.Unix(0, date), strings.Fields(flags)
	var rest io.Reader = bytes.NewReader(body)
	if chunked {
		rest = s.large.open(ctx, msgID)
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(prefix), rest)), mi, nil
}

// chunkReader reads a chunked body, one chunk per query.
type chunkReader struct {
	pool  *pgxpool.Pool
	ctx   context.Context
	msgID int64
	seq   int
	cur   []byte
	done  bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.done {
			return 0, io.EOF
		}
		err := c.pool.QueryRow(c.ctx, `SELECT data FROM message_chunks WHERE message_id = $1 AND seq = $2`, c.msgID, c.seq).Scan(&c.cur)
		if errors.Is(err, pgx.ErrNoRows) {
			c.done = true
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("store: read a body's chunk %d: %w", c.seq, err)
		}
		c.seq++
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// MailboxStatus describes one mailbox.
func (s *Store) MailboxStatus(ctx context.Context, userID int64, mailbox string) (store.MailboxStatus, error) {
	st := store.MailboxStatus{Name: mailbox}
	var validity, next, recentUID int64
	err := s.pool.QueryRow(ctx, `SELECT mb.id, mb.uidvalidity, mb.uidnext, mb.highest_modseq, mb.recent_uid,
		count(mm.uid) FILTER (WHERE mm.uid >= mb.recent_uid), count(mm.uid),
		count(mm.uid) FILTER (WHERE strpos(' ' || mm.flags || ' ', ' \Seen ') = 0),
		count(mm.uid) FILTER (WHERE strpos(' ' || mm.flags || ' ', ' \Deleted ') > 0), coalesce(sum(mm.size), 0)
		FROM mailboxes mb LEFT JOIN mailbox_messages mm ON mm.mailbox_id = mb.id WHERE mb.user_id = $1 AND mb.name = $2 GROUP BY mb.id`, userID, mailbox).
		Scan(&st.ID, &validity, &next, &st.HighestModSeq, &recentUID, &st.Recent, &st.Messages, &st.Unseen, &st.Deleted, &st.Size)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("mailbox %s: %w", mailbox, store.ErrNotFound)
	}
	st.UIDValidity, st.UIDNext, st.RecentUID = uint32(validity), uint32(next), uint32(recentUID)
	return st, err
}
