package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"mailroom/internal/store"
)

// Accept commits a message and its mailbox copies durably.
func (s *Store) Accept(ctx context.Context, m *store.Message) error {
	env, err := json.Marshal(m.SMTPEnvelope)
	if err != nil {
		return fmt.Errorf("store: encode envelope: %w", err)
	}
	// UnixNano of the zero time is undefined: a missing date is now.
	received := m.Received
	if received.IsZero() {
		received = time.Now()
	}
	inline, file, size, err := s.stageBody(m.Body, m.Size)
	if err != nil {
		return err
	}
	relayed := len(m.Remote) > 0 && file == "" // the body cache keeps inline
	if !relayed {
		defer releaseBody(inline) // SQLite copied it when binding
	}
	err = s.writeCounted(ctx, func(tx *wtx) error {
		msgID, err := tx.nextID(seqMessages)
		if err != nil {
			return err
		}
		if err := tx.insertMessage(msgID, m.QueueID, received.UnixNano(), size, string(env), m.From, m.Subject, inline, file, m.Summary); err != nil {
			return err
		}
		if relayed {
			tx.onCommit(func() { s.bodies.put(msgID, inline) })
		}
		for _, t := range m.Local {
			used, err := insertCopy(tx, msgID, size, received, t, nil)
			if err != nil {
				return err
			}
			tx.onCommit(func() { s.dircache.setUsed(t.UserID, used) })
			tx.changed(t.UserID, 0)
		}
		for _, r := range m.Remote {
			id, err := tx.nextID(seqQueue)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(sqlEnqueue, id, msgID, r.Address, strings.ToLower(r.Domain), strings.Join(r.Notify, ","), r.ORcpt,
				store.StatePending, received.UnixNano(), received.UnixNano()); err != nil {
				return err
			}
		}
		if m.Log != nil {
			if err := insertLog(tx, m.Log, received); err != nil {
				return err
			}
		}
		return insertEvents(tx, m.Events, received)
	})
	if err != nil {
		if file != "" {
			os.Remove(filepath.Join(s.dir, "blobs", file))
		}
		var qe *store.QuotaError
		if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrStorage) && !errors.As(err, &qe) {
			err = storageErr("accept", err)
		}
		return fmt.Errorf("store: accept %s: %w", m.QueueID, err)
	}
	return nil
}

// Expunge removes messages from a mailbox for good: their copies, the
// space they took in the user's quota, and each body no other copy or
// queue entry still uses. It returns the UIDs it removed, in the order
// given; UIDs not in the mailbox are skipped.
func (s *Store) Expunge(ctx context.Context, userID int64, mailbox string, uids []uint32) ([]uint32, error) {
	var removed []uint32
	var files []string
	err := s.write(ctx, func(tx *wtx) error {
		removed, files = removed[:0], nil
		// One MODSEQ for everything this expunge removes (RFC 7162 3.2.10).
		mboxID, modseq, err := tx.nextModSeq(userID, mailbox)
		if err != nil {
			return err
		}
		var ids []int64
		for _, uid := range uids {
			var msgID, size int64
			err := tx.QueryRow(`DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ? RETURNING message_id, size`, mboxID, uid).Scan(&msgID, &size)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)`, mboxID, uid, modseq); err != nil {
				return err
			}
			if _, _, err := tx.addUsed(userID, -size); err != nil {
				return err
			}
			removed, ids = append(removed, uid), append(ids, msgID)
		}
		if len(removed) > 0 {
			mb, err := tx.mailbox(userID, mailbox)
			if err != nil {
				return err
			}
			tx.changedMessages(userID, mb)
		}
		files, err = deleteUnreferenced(tx, ids)
		return err
	})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			err = storageErr("expunge", err)
		}
		return nil, fmt.Errorf("store: expunge from %q of user %d: %w", mailbox, userID, err)
	}
	if len(removed) > 0 {
		// The user's used bytes went down: every process (a server beside
		// this CLI) must read them again, or it would go on refusing the
		// user for a quota that now has room.
		s.dircache.changed()
	}
	s.removeBlobs(files)
	return removed, nil
}

// decodeEnvelope decodes a stored SMTP envelope.
func decodeEnvelope(b []byte, env *store.SMTPEnvelope) error {
	if err := json.Unmarshal(b, env); err != nil {
		return fmt.Errorf("stored SMTP envelope %.80q: %w", b, err)
	}
	return nil
}

// insertCopy puts one copy of message msgID, of bodySize octets, into a
// user's mailbox under the next UID, with the given flags, and returns the
// user's used bytes. It fails with a *store.QuotaError rather than go over
// the user's quota.
func insertCopy(tx *wtx, msgID, bodySize int64, received time.Time, t store.LocalTarget, flags []string) (int64, error) {
	_, used, err := insertCopyUID(tx, msgID, bodySize, received, t, flags)
	return used, err
}

// insertCopyUID is insertCopy, returning the UID taken too.
func insertCopyUID(tx *wtx, msgID, bodySize int64, received time.Time, t store.LocalTarget, flags []string) (uint32, int64, error) {
	mboxID, uid, modseq, err := tx.nextUID(t.UserID, t.Mailbox)
	if err != nil {
		return 0, 0, err
	}
	size := bodySize + int64(len(t.Prefix))
	if _, err := tx.Exec(sqlInsertCopy,
		mboxID, uid, msgID, append([]byte{}, t.Prefix...), size, received.UnixNano(), modseq, strings.Join(flags, " ")); err != nil {
		return 0, 0, err
	}
	used, quota, err := tx.addUsed(t.UserID, size)
	if err != nil {
		return 0, 0, err
	}
	if quota > 0 && used > quota {
		return 0, 0, &store.QuotaError{UserID: t.UserID, Used: used - size, Quota: quota, Size: size}
	}
	return uid, used, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// stageBody reads a message body: one within InlineLimit is returned to be
// stored in the database, a larger one is first written to a blob file.
// hint is Message.Size: a body announced as large goes straight to a file,
// but the size returned is always the octets read, so that a wrong or
// missing hint cannot make Size disagree with what OpenMessage returns.
func (s *Store) stageBody(r io.Reader, hint int64) (inline []byte, file string, size int64, err error) {
	limit := s.opts.InlineLimit
	if hint > limit {
		file, size, err = s.writeBlob(r)
		return nil, file, size, err
	}
	buf := bytes.NewBuffer(bodyBuffer(max(hint, 0) + bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, "", 0, fmt.Errorf("store: read message: %w", err)
	}
	if int64(buf.Len()) <= limit {
		return buf.Bytes(), "", int64(buf.Len()), nil
	}
	file, size, err = s.writeBlob(io.MultiReader(buf, r))
	return nil, file, size, err
}

// bodyBuffers are the buffers stageBody reads small bodies into, reused
// (a new one per message was a third of the bytes the server allocated).
var bodyBuffers sync.Pool

// maxPooledBody is the largest buffer kept for reuse.
const maxPooledBody = 64 << 10

// bodyBuffer returns an empty buffer of at least n octets' capacity.
func bodyBuffer(n int64) []byte {
	if n <= maxPooledBody {
		if b, ok := bodyBuffers.Get().(*[]byte); ok {
			if int64(cap(*b)) >= n {
				return (*b)[:0]
			}
		}
	}
	return make([]byte, 0, n)
}

// releaseBody gives a buffer from stageBody back once nothing refers to it.
func releaseBody(b []byte) {
	if b != nil && cap(b) <= maxPooledBody {
		bodyBuffers.Put(&b)
	}
}

// writeBlob writes a large body to its own file under blobs/ and makes
// both the file and its directory entry durable before the index commits
// (the order mox's queue.Add uses; the reverse would index a body that a
// crash can lose).
func (s *Store) writeBlob(r io.Reader) (name string, size int64, err error) {
	var rnd [12]byte
	rand.Read(rnd[:])
	name = hex.EncodeToString(rnd[:])
	dir := filepath.Join(s.dir, "blobs")
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", 0, storageErr("create blob", err)
	}
	size, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(path)
		return "", 0, storageErr("write blob", err)
	}
	return name, size, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// deleteUnreferenced deletes the given messages that no mailbox holds and
// no waiting queue entry needs, with their final queue entries, and
// returns the blob files to remove once the deletion commits.
func deleteUnreferenced(tx *wtx, ids []int64) ([]string, error) {
	var files []string
	for _, id := range ids {
		var used bool
		if err := tx.QueryRow(sqlMessageUsed, id, id).Scan(&used); err != nil {
			return nil, err
		}
		if used {
			continue
		}
		if _, err := tx.Exec(sqlDeleteEntries, id); err != nil {
			return nil, err
		}
		var file sql.NullString
		err := tx.QueryRow(sqlDeleteMessage, id).Scan(&file)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if tx.bodies != nil {
			tx.onCommit(func() { tx.bodies.drop(id) })
		}
		if file.Valid {
			files = append(files, file.String)
		}
	}
	return files, nil
}

// removeBlobs removes body files whose rows are gone; while a backup runs
// they stay, for the hourly orphan sweep to remove.
func (s *Store) removeBlobs(files []string) {
	if len(files) == 0 {
		return
	}
	guard, ok := s.blobRemovalAllowed()
	if !ok {
		return
	}
	defer guard.release()
	for _, f := range files {
		os.Remove(filepath.Join(s.dir, "blobs", f))
	}
}

// Messages lists a mailbox in UID order.
func (s *Store) Messages(ctx context.Context, userID int64, mailbox string) ([]store.MessageInfo, error) {
	rows, err := s.query(ctx, `SELECT mm.uid, m.queue_id, mm.internal_date, mm.size, mm.flags, mm.modseq, m.from_hdr, m.subject
		FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id JOIN messages m ON m.id = mm.message_id
		WHERE mb.user_id = ? AND mb.name = ? ORDER BY mm.uid`, userID, mailbox)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.MessageInfo
	for rows.Next() {
		mi := store.MessageInfo{UserID: userID, Mailbox: mailbox}
		var date int64
		var flags string
		if err := rows.Scan(&mi.UID, &mi.QueueID, &date, &mi.Size, &flags, &mi.ModSeq, &mi.From, &mi.Subject); err != nil {
			return nil, err
		}
		mi.Date = time.Unix(0, date)
		mi.Flags = strings.Fields(flags)
		out = append(out, mi)
	}
	return out, rows.Err()
}

// OpenMessage returns the stored message: its per-copy prefix, then the body.
func (s *Store) OpenMessage(ctx context.Context, userID int64, mailbox string, uid uint32) (io.ReadCloser, store.MessageInfo, error) {
	mi := store.MessageInfo{UserID: userID, Mailbox: mailbox, UID: uid}
	var date int64
	var flags string
	var prefix, body []byte
	var file sql.NullString
	var env []byte
	err := s.queryRow(ctx, `SELECT m.queue_id, mm.internal_date, mm.size, mm.flags, mm.modseq, m.from_hdr, m.subject, m.envelope, mm.prefix, m.body, m.body_file
		FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id JOIN messages m ON m.id = mm.message_id
		WHERE mb.user_id = ? AND mb.name = ? AND mm.uid = ?`, userID, mailbox, uid).
		Scan(&mi.QueueID, &date, &mi.Size, &flags, &mi.ModSeq, &mi.From, &mi.Subject, &env, &prefix, &body, &file)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mi, fmt.Errorf("message %d in %s: %w", uid, mailbox, store.ErrNotFound)
	}
	if err == nil {
		err = decodeEnvelope(env, &mi.SMTPEnvelope)
	}
	if err != nil {
		return nil, mi, fmt.Errorf("store: open message: %w", err)
	}
	mi.Date = time.Unix(0, date)
	mi.Flags = strings.Fields(flags)
	if !file.Valid {
		return io.NopCloser(io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(body))), mi, nil
	}
	f, err := s.openBlob(file.String)
	if err != nil {
		return nil, mi, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(prefix), f), f}, mi, nil
}

// ReadMessages calls fn with each message of uids, in ascending UID order,
// from one query; the bodies kept inline are handed over without a copy.
func (s *Store) ReadMessages(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(uid uint32, r io.Reader) error) error {
	if len(uids) == 0 {
		return nil
	}
	want := slices.Clone(uids)
	slices.Sort(want)
	which, arg := uidSet(want)
	rows, err := s.query(ctx, `SELECT mm.uid, mm.prefix, m.body, m.body_file
		FROM mailboxes mb JOIN mailbox_messages mm ON mm.mailbox_id = mb.id JOIN messages m ON m.id = mm.message_id
		WHERE mb.user_id = ? AND mb.name = ? AND `+which+` ORDER BY mm.uid`, append([]any{userID, mailbox}, arg...)...)
	if err != nil {
		return fmt.Errorf("store: read messages of %q: %w", mailbox, err)
	}
	defer rows.Close()
	i := 0
	var prefix, body sql.RawBytes
	var file sql.NullString
	var uid uint32
	var pr, br bytes.Reader
	for rows.Next() {
		if err := rows.Scan(&uid, &prefix, &body, &file); err != nil {
			return fmt.Errorf("store: read messages of %q: %w", mailbox, err)
		}
		for i < len(want) && want[i] < uid {
			i++
		}
		if i == len(want) {
			break
		}
		if want[i] != uid {
			continue
		}
		pr.Reset(prefix)
		if !file.Valid {
			br.Reset(body)
			err = fn(uid, io.MultiReader(&pr, &br))
		} else {
			err = s.withBlob(file.String, func(f *os.File) error { return fn(uid, io.MultiReader(&pr, f)) })
		}
		if err != nil {
			return err
		}
	}
	return rows.Err()
}

// withBlob calls fn with a body file open.
func (s *Store) withBlob(name string, fn func(*os.File) error) error {
	f, err := s.openBlob(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(f)
}

// openBlob opens a body kept in its own file.
func (s *Store) openBlob(name string) (*os.File, error) {
	f, err := os.Open(filepath.Join(s.dir, "blobs", name))
	if err != nil {
		return nil, storageErr("open blob", err)
	}
	return f, nil
}

// MailboxStatus describes one mailbox.
func (s *Store) MailboxStatus(ctx context.Context, userID int64, mailbox string) (store.MailboxStatus, error) {
	st := store.MailboxStatus{Name: mailbox}
	err := s.queryRow(ctx, `SELECT id, uidvalidity, uidnext, highest_modseq, recent_uid, coalesce(sum(mm.uid >= mb.recent_uid), 0), count(mm.uid),
		coalesce(sum(' ' || mm.flags || ' ' NOT LIKE '% \Seen %'), 0), coalesce(sum(' ' || mm.flags || ' ' LIKE '% \Deleted %'), 0), coalesce(sum(mm.size), 0)
		FROM mailboxes mb LEFT JOIN mailbox_messages mm ON mm.mailbox_id = mb.id WHERE mb.user_id = ? AND mb.name = ? GROUP BY mb.id`, userID, mailbox).
		Scan(&st.ID, &st.UIDValidity, &st.UIDNext, &st.HighestModSeq, &st.RecentUID, &st.Recent, &st.Messages, &st.Unseen, &st.Deleted, &st.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("mailbox %s: %w", mailbox, store.ErrNotFound)
	}
	return st, err
}

// RemoveOrphanBlobs deletes body files under blobs/ that no message
// references and that are older than minAge: what a crash between a body's
// fsync and its index commit leaves behind. minAge keeps it away from
// bodies whose commit is still in flight.
func (s *Store) RemoveOrphanBlobs(ctx context.Context, minAge time.Duration) (int, error) {
	dir := filepath.Join(s.dir, "blobs")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("store: list blobs: %w", err)
	}
	guard, ok := s.blobRemovalAllowed()
	if !ok {
		return 0, nil // a backup runs: sweep next time
	}
	defer guard.release()
	removed := 0
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !e.Type().IsRegular() || time.Since(info.ModTime()) < minAge {
			continue
		}
		var n int
		if err := s.queryRow(ctx, `SELECT count(*) FROM messages WHERE body_file = ?`, e.Name()).Scan(&n); err != nil {
			return removed, fmt.Errorf("store: check blob %s: %w", e.Name(), err)
		}
		if n == 0 && os.Remove(filepath.Join(dir, e.Name())) == nil {
			removed++
		}
	}
	return removed, nil
}
