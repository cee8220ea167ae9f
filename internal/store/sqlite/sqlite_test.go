package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/store/storetest"
)

// smallInline keeps bodies above 4 KiB in blob files, so that the suite
// exercises both ways of storing a body.
var smallInline = Options{InlineLimit: 4096}

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, t.TempDir(), smallInline)
	})
}

// setup opens a store with one user and returns both.
func setup(t testing.TB, dir string, opts Options) (*Store, store.User) {
	t.Helper()
	s := open(t, dir, opts)
	ctx := context.Background()
	if err := s.AddDomain(ctx, store.Domain{Name: "a.example"}); err != nil {
		t.Fatalf("AddDomain: %v", err)
	}
	u, err := s.AddUser(ctx, store.User{Address: "alice@a.example", PasswordHash: "h"})
	if err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	return s, u
}

func newMessage(body []byte, subject string, to ...store.User) *store.Message {
	m := &store.Message{
		QueueID:      store.NewQueueID(),
		SMTPEnvelope: store.SMTPEnvelope{MailFrom: "sender@remote.example"},
		Received:     time.Now(),
		Body:         bytes.NewReader(body),
		Size:         int64(len(body)),
		Subject:      subject,
	}
	for _, u := range to {
		m.Local = append(m.Local, store.LocalTarget{UserID: u.ID, Mailbox: store.Inbox, Prefix: []byte("Delivered-To: " + u.Address + "\r\n")})
	}
	return m
}

func readMessage(t *testing.T, s *Store, u store.User, uid uint32) []byte {
	t.Helper()
	rc, _, err := s.OpenMessage(t.Context(), u.ID, store.Inbox, uid)
	if err != nil {
		t.Fatalf("OpenMessage(%d): %v", uid, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read message %d: %v", uid, err)
	}
	return b
}

func blobFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, u := setup(t, dir, smallInline)
	small := []byte("Subject: small\r\n\r\nsmall body\r\n")
	large := bytes.Repeat([]byte("0123456789abcdef\r\n"), 1000)
	for _, body := range [][]byte{small, large} {
		if err := s.Accept(t.Context(), newMessage(body, "m", u)); err != nil {
			t.Fatalf("Accept: %v", err)
		}
	}
	if err := s.SetPassword(t.Context(), u.Address, store.Secrets{Hash: "h2"}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.MailboxStatus(t.Context(), u.ID, store.Inbox)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir, smallInline)
	defer s.Close()
	got, err := s.User(t.Context(), u.Address)
	if err != nil || got.ID != u.ID || got.PasswordHash != "h2" || got.UsedBytes == 0 {
		t.Errorf("after reopening, User = %+v, %v; want ID %d, hash h2, some bytes used", got, err, u.ID)
	}
	if after, _ := s.MailboxStatus(t.Context(), u.ID, store.Inbox); after != before {
		t.Errorf("after reopening, INBOX status = %+v, want %+v", after, before)
	}
	for uid, body := range map[uint32][]byte{1: small, 2: large} {
		want := append([]byte("Delivered-To: "+u.Address+"\r\n"), body...)
		if got := readMessage(t, s, u, uid); !bytes.Equal(got, want) {
			t.Errorf("after reopening, message %d has %d bytes, want %d", uid, len(got), len(want))
		}
	}
	// And the reopened store keeps numbering where it left off.
	if err := s.Accept(t.Context(), newMessage(small, "m", u)); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.Messages(t.Context(), u.ID, store.Inbox); len(ms) != 3 || ms[2].UID != 3 {
		t.Errorf("after reopening, the next message got %+v, want UID 3", ms)
	}
}

// TestTwoHandles opens the same directory twice, as the CLI does while the
// server runs: each handle has its own committer, and SQLite's locking
// must keep their writes apart and UIDs unique.
func TestTwoHandles(t *testing.T) {
	dir := t.TempDir()
	server, u := setup(t, dir, smallInline)
	defer server.Close()
	cli := open(t, dir, smallInline)
	defer cli.Close()
	ctx := t.Context()

	if _, err := cli.User(ctx, u.Address); err != nil {
		t.Fatalf("the second handle does not see the first's user: %v", err)
	}
	if err := cli.AddDomain(ctx, store.Domain{Name: "b.example"}); err != nil {
		t.Fatalf("AddDomain through the second handle: %v", err)
	}
	if _, err := server.Domain(ctx, "b.example"); err != nil {
		t.Fatalf("the first handle does not see the second's domain: %v", err)
	}
	err := server.AddDomain(ctx, store.Domain{Name: "b.example"})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("adding the other handle's domain again: %v, want ErrExists", err)
	}

	const each = 100
	var wg sync.WaitGroup
	for _, s := range []*Store{server, cli} {
		for g := range 5 {
			wg.Go(func() {
				for i := range each / 5 {
					body := fmt.Appendf(nil, "message %d.%d\r\n", g, i)
					if err := s.Accept(ctx, newMessage(body, "m", u)); err != nil {
						t.Errorf("Accept: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for name, s := range map[string]*Store{"first": server, "second": cli} {
		ms, err := s.Messages(ctx, u.ID, store.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 2*each {
			t.Errorf("the %s handle lists %d messages, want %d", name, len(ms), 2*each)
		}
		for i, mi := range ms {
			if mi.UID != uint32(i+1) {
				t.Fatalf("the %s handle: message %d has UID %d", name, i+1, mi.UID)
			}
		}
	}
}

// TestFailureInBatchIsolated queues good and failing requests behind one
// that holds the committer, so that they all share the next batch, and
// checks that only the failing one is undone.
// holdCommitter keeps the committer busy with a write that waits; the
// function returned lets it go once n more writes are queued behind it, so
// that they share one batch (n = 0: at once). It may be called again.
func holdCommitter(t *testing.T, s *Store) (releaseAfter func(n int)) {
	t.Helper()
	started, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.write(context.Background(), func(tx *wtx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	once := sync.OnceFunc(func() {
		close(release)
		if err := <-held; err != nil {
			t.Errorf("the held write: %v", err)
		}
	})
	return func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); len(s.reqs) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				once()
				t.Fatalf("only %d of %d writes queued", len(s.reqs), n)
			}
		}
		once()
	}
}

func TestFailureInBatchIsolated(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	ctx := t.Context()

	releaseAfter := holdCommitter(t, s)
	defer releaseAfter(0) // before Close, which waits for the committer

	const good = 20
	errBad := errors.New("this request fails")
	results := make(chan error, good+1)
	for i := range good {
		go func() {
			results <- s.write(ctx, func(tx *wtx) error {
				_, err := tx.Exec(`INSERT INTO domains(name, created) VALUES (?, 0)`, fmt.Sprintf("good%d.example", i))
				return err
			})
		}()
	}
	go func() {
		results <- s.write(ctx, func(tx *wtx) error {
			if _, err := tx.Exec(`INSERT INTO domains(name, created) VALUES ('bad.example', 0)`); err != nil {
				return err
			}
			return errBad
		})
	}()
	releaseAfter(good + 1)

	var failed int
	for range good + 1 {
		if err := <-results; err != nil {
			if !errors.Is(err, errBad) {
				t.Errorf("write: %v, want nil or the request's own error", err)
			}
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d requests failed, want 1", failed)
	}
	ds, err := s.Domains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != good {
		t.Errorf("%d domains committed, want the %d good ones", len(ds), good)
	}
	if _, err := s.Domain(ctx, "bad.example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the failed request's insert survived: %v", err)
	}
}

func TestFailedAcceptLeavesNoRowOrBlob(t *testing.T) {
	dir := t.TempDir()
	s, u := setup(t, dir, smallInline)
	defer s.Close()
	for _, body := range [][]byte{[]byte("small\r\n"), bytes.Repeat([]byte("large\r\n"), 2000)} {
		m := newMessage(body, "doomed", u)
		m.Local = append(m.Local, store.LocalTarget{UserID: u.ID + 1, Mailbox: store.Inbox})
		if err := s.Accept(t.Context(), m); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Accept to a missing user: %v, want ErrNotFound", err)
		}
	}
	var n int
	if err := s.reads.db.QueryRow(`SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM mailbox_messages)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d message rows remain after failed Accepts", n)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("blob files remain after failed Accepts: %q", files)
	}
}

func TestDeleteUserRemovesUnsharedBlobs(t *testing.T) {
	dir := t.TempDir()
	s, alice := setup(t, dir, smallInline)
	defer s.Close()
	bob, err := s.AddUser(t.Context(), store.User{Address: "bob@a.example"})
	if err != nil {
		t.Fatal(err)
	}
	large := bytes.Repeat([]byte("large\r\n"), 2000)
	for _, m := range []*store.Message{newMessage(large, "shared", alice, bob), newMessage(large, "alice's", alice)} {
		if err := s.Accept(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if files := blobFiles(t, dir); len(files) != 2 {
		t.Fatalf("%d blob files, want 2", len(files))
	}
	if err := s.DeleteUser(t.Context(), alice.Address); err != nil {
		t.Fatal(err)
	}
	if files := blobFiles(t, dir); len(files) != 1 {
		t.Errorf("after deleting alice, %d blob files remain, want bob's one", len(files))
	}
	if got := readMessage(t, s, bob, 1); !bytes.HasSuffix(got, large) {
		t.Errorf("bob's shared message lost its body")
	}
}

// TestCloseWhileWriting closes the store under writers: each write either
// commits or fails with ErrStorage, and none panics or hangs.
func TestCloseWhileWriting(t *testing.T) {
	s, u := setup(t, t.TempDir(), Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for {
				err := s.Accept(ctx, newMessage([]byte("x\r\n"), "m", u))
				if errors.Is(err, store.ErrStorage) {
					return
				}
				if err != nil {
					t.Errorf("Accept: %v, want nil or ErrStorage", err)
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.AddDomain(ctx, store.Domain{Name: "late.example"}); !errors.Is(err, store.ErrStorage) {
		t.Errorf("AddDomain after Close: %v, want ErrStorage", err)
	}
}

// BenchmarkAccept measures concurrent deliveries of a 10 KiB message to
// one of eight users, the group committer sharing fsyncs among them. It
// runs 16 goroutines per CPU, like many SMTP sessions at once.
func BenchmarkAccept(b *testing.B) {
	s, u := setup(b, b.TempDir(), Options{})
	defer s.Close()
	users := []store.User{u}
	for i := range 7 {
		v, err := s.AddUser(context.Background(), store.User{Address: fmt.Sprintf("user%d@a.example", i)})
		if err != nil {
			b.Fatal(err)
		}
		users = append(users, v)
	}
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq\r\n"), 160) // 10 KiB
	var mu sync.Mutex
	next := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		to := users[next%len(users)]
		next++
		mu.Unlock()
		for pb.Next() {
			if err := s.Accept(context.Background(), newMessage(body, "bench", to)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestRemoveOrphanBlobs: a body file left by a crash before its commit is
// removed once old enough; referenced and recent files stay.
func TestRemoveOrphanBlobs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{InlineLimit: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddDomain(ctx, store.Domain{Name: "example.test"})
	u, _ := s.AddUser(ctx, store.User{Address: "a@example.test"})
	body := strings.Repeat("x", 100)
	if err := s.Accept(ctx, &store.Message{QueueID: "q1", Body: strings.NewReader(body), Local: []store.LocalTarget{{UserID: u.ID, Mailbox: store.Inbox}}}); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(dir, "blobs")
	old, recent := filepath.Join(blobs, "orphan-old"), filepath.Join(blobs, "orphan-recent")
	os.WriteFile(old, []byte("lost"), 0o600)
	os.WriteFile(recent, []byte("in flight"), 0o600)
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	entries, _ := os.ReadDir(blobs)
	for _, e := range entries {
		if e.Name() != "orphan-recent" {
			os.Chtimes(filepath.Join(blobs, e.Name()), past, past)
		}
	}
	n, err := s.RemoveOrphanBlobs(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("removed %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("the old orphan is still there")
	}
	if _, err := os.Stat(recent); err != nil {
		t.Error("a recent file was removed")
	}
	rc, _, err := s.OpenMessage(ctx, u.ID, store.Inbox, 1)
	if err != nil {
		t.Fatalf("the referenced body was removed: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.HasSuffix(string(got), body) {
		t.Error("the referenced body changed")
	}
}

// TestNewerSchemaIsRefused: a database written by a newer Mailroom is not
// opened (and so not damaged) by an older one.
func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, dir, Options{}); err == nil || !strings.Contains(err.Error(), "upgrade mailroom") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}

// BenchmarkClaimAndRecord: the queue's store work per delivered message:
// claimed in batches of 100, each result recorded by its own caller (as
// delivery goroutines do), the finished message deleted.
func BenchmarkClaimAndRecord(b *testing.B) {
	s, _ := setup(b, b.TempDir(), Options{})
	defer s.Close()
	ctx := context.Background()
	for i := range b.N {
		m := newMessage([]byte("Subject: x\r\n\r\nx\r\n"), fmt.Sprintf("q%d", i))
		m.Remote = []store.QueuedRecipient{{Address: "x@remote.example", Domain: "remote.example"}}
		if err := s.Accept(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		es, err := s.ClaimDue(ctx, time.Now(), time.Hour, 100)
		if err != nil || len(es) == 0 {
			b.Fatalf("ClaimDue: %d, %v", len(es), err)
		}
		var wg sync.WaitGroup
		for _, e := range es {
			wg.Go(func() {
				if err := s.RecordResults(ctx, []store.QueueResult{{ID: e.ID, State: store.StateDelivered, Error: "250 ok"}}); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		done += len(es)
	}
}

// TestCountersInOneBatch: copies delivered in one batch take consecutive
// UIDs and MODSEQs and add up the used bytes, counted in memory and written
// once; a copy refused in the middle (over quota) leaves no gap, and a
// write of another kind in the middle (a user added) sees and keeps the
// counters as they are.
func TestCountersInOneBatch(t *testing.T) {
	s, alice := setup(t, t.TempDir(), Options{})
	defer s.Close()
	ctx := t.Context()
	var base int64 // a new mailbox's highest MODSEQ
	s.reads.db.QueryRow(`SELECT highest_modseq FROM mailboxes WHERE user_id = ? AND name = 'INBOX'`, alice.ID).Scan(&base)
	// Carol's mailbox can take nothing: a message to alice and carol is
	// refused after alice's copy was counted.
	carol, err := s.AddUser(ctx, store.User{Address: "carol@a.example", PasswordHash: "h", QuotaBytes: 1})
	if err != nil {
		t.Fatal(err)
	}

	releaseAfter := holdCommitter(t, s)
	defer releaseAfter(0)

	const n = 30
	type result struct {
		size int64
		err  error
	}
	results := make(chan result, n+1)
	for i := range n {
		go func() {
			m := newMessage(bytes.Repeat([]byte("x"), 100+i), "counted", alice)
			if i%4 == 3 {
				m = newMessage(bytes.Repeat([]byte("x"), 100+i), "counted", alice, carol) // refused, whatever the order
			}
			results <- result{int64(100+i) + int64(len(m.Local[0].Prefix)), s.Accept(ctx, m)}
		}()
	}
	go func() {
		_, err := s.AddUser(ctx, store.User{Address: "bob@a.example", PasswordHash: "h"})
		results <- result{-1, err}
	}()
	releaseAfter(n + 1)
	var ok, used int64
	for range n + 1 {
		r := <-results
		var qe *store.QuotaError
		switch {
		case r.size < 0 && r.err != nil:
			t.Fatalf("AddUser: %v", r.err)
		case r.size < 0:
		case r.err == nil:
			ok++
			used += r.size
		case !errors.As(r.err, &qe):
			t.Fatalf("Accept: %v", r.err)
		}
	}
	if ok != n-n/4 {
		t.Fatalf("%d accepted, want %d", ok, n-n/4)
	}
	rows, err := s.reads.db.Query(`SELECT mm.uid, mm.modseq FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id WHERE mb.user_id = ? ORDER BY mm.uid`, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	var want int64 = 1
	for rows.Next() {
		var uid, modseq int64
		rows.Scan(&uid, &modseq)
		if uid != want || modseq != base+want {
			rows.Close()
			t.Fatalf("copy %d has UID %d and MODSEQ %d (a new mailbox's: %d)", want, uid, modseq, base)
		}
		want++
	}
	rows.Close()
	var uidnext, highest, dbUsed int64
	s.reads.db.QueryRow(`SELECT uidnext, highest_modseq FROM mailboxes WHERE user_id = ? AND name = 'INBOX'`, alice.ID).Scan(&uidnext, &highest)
	s.reads.db.QueryRow(`SELECT used_bytes FROM users WHERE id = ?`, alice.ID).Scan(&dbUsed)
	if want-1 != ok || uidnext != ok+1 || highest != base+ok || dbUsed != used {
		t.Fatalf("%d copies, uidnext %d, highest MODSEQ %d, used %d; want %d copies, uidnext %d, MODSEQ %d, used %d",
			want-1, uidnext, highest, dbUsed, ok, ok+1, base+ok, used)
	}
	if u, err := s.User(ctx, alice.Address); err != nil || u.UsedBytes != used {
		t.Fatalf("cached used bytes %d (%v), want %d", u.UsedBytes, err, used)
	}
	// The next batch goes on from there.
	if err := s.Accept(ctx, newMessage([]byte("later"), "later", alice)); err != nil {
		t.Fatal(err)
	}
	s.reads.db.QueryRow(`SELECT uidnext FROM mailboxes WHERE user_id = ? AND name = 'INBOX'`, alice.ID).Scan(&uidnext)
	if uidnext != ok+2 {
		t.Fatalf("uidnext %d after one more, want %d", uidnext, ok+2)
	}
}

// TestLazyWrites: a batch of lazy writes only (flags, summaries, the search
// index) commits without a WAL fsync; a batch with any other write, and
// every batch after a lazy one, with it.
func TestLazyWrites(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	ctx := t.Context()
	sync := func(tx *wtx) int {
		var mode int
		if err := tx.QueryRow(`PRAGMA synchronous`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		return mode
	}
	const normal, full = 1, 2
	var got int
	if err := s.writeLazy(ctx, false, func(tx *wtx) error { got = sync(tx); return nil }); err != nil || got != normal {
		t.Errorf("a lazy batch: synchronous = %d, %v; want %d", got, err, normal)
	}
	if err := s.write(ctx, func(tx *wtx) error { got = sync(tx); return nil }); err != nil || got != full {
		t.Errorf("the next batch: synchronous = %d, %v; want %d", got, err, full)
	}
	releaseAfter := holdCommitter(t, s)
	results := make(chan int, 2)
	go s.writeLazy(ctx, false, func(tx *wtx) error { results <- sync(tx); return nil })
	go s.write(ctx, func(tx *wtx) error { results <- sync(tx); return nil })
	releaseAfter(2)
	for range 2 {
		if got := <-results; got != full {
			t.Errorf("a batch of a lazy and a durable write: synchronous = %d, want %d", got, full)
		}
	}
}
