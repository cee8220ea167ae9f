package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
	"mailroom/internal/store/postgres/pgtest"
	"mailroom/internal/store/storetest"
	"mailroom/internal/textindex"
)

// server is the PostgreSQL of this package's tests; template a database
// migrated once, that each test's database is copied from.
var (
	server   *pgtest.Server
	template string
)

func TestMain(m *testing.M) {
	var err error
	server, err = pgtest.Start(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		ctx := context.Background()
		if template, err = server.CreateDB(ctx, ""); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		s, err := Open(ctx, server.URL(template), Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		s.Close()
		return m.Run()
	}()
	server.Stop()
	os.Exit(code)
}

// fresh returns a new, empty, migrated database's URL.
func fresh(t *testing.T) string {
	t.Helper()
	name, err := server.CreateDB(t.Context(), template)
	if err != nil {
		t.Fatal(err)
	}
	return server.URL(name)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), fresh(t), Options{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestMigrations: a new database gets every step; a database ahead of
// this Mailroom is taken when the steps it lacks only expanded the
// schema, and refused, saying what to do, when one contracted it.
func TestMigrations(t *testing.T) {
	ctx := t.Context()
	url := fresh(t)
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var have int
	s.pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&have)
	s.Close()
	if have != len(migrations) {
		t.Fatalf("schema at %d, want %d", have, len(migrations))
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// A newer node added an expand step (its min_reader is ours): we run.
	conn.Exec(ctx, `INSERT INTO schema_migrations(version, min_reader) VALUES ($1, $2)`, len(migrations)+1, len(migrations))
	if s, err := Open(ctx, url, Options{}); err != nil {
		t.Fatalf("a schema ahead by an expand step: %v", err)
	} else {
		s.Close()
	}
	// Then a contract step: this node is too old for it.
	conn.Exec(ctx, `INSERT INTO schema_migrations(version, min_reader) VALUES ($1, $1)`, len(migrations)+2)
	_, err = Open(ctx, url, Options{})
	if err == nil || !strings.Contains(err.Error(), "upgrade this node") {
		t.Fatalf("a schema ahead by a contract step: %v, want a refusal saying to upgrade", err)
	}
	// An older database is brought forward step by step.
	steps := append(migrations, migration{len(migrations), `CREATE TABLE later (x int)`})
	url2 := fresh(t)
	conn2, err := pgx.Connect(ctx, url2)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	if err := applyMigrations(ctx, conn2, len(migrations), 0, steps); err != nil {
		t.Fatal(err)
	}
	if _, err := conn2.Exec(ctx, `INSERT INTO later VALUES (1)`); err != nil {
		t.Errorf("the new step was not applied: %v", err)
	}
}

// twoNodes opens two stores on one new database, as two nodes would.
func twoNodes(t *testing.T) (a, b *Store) {
	t.Helper()
	url := fresh(t)
	for _, s := range []**Store{&a, &b} {
		st, err := Open(t.Context(), url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		*s = st
	}
	return a, b
}

// TestWatchAcrossNodes: a change made through one node's store wakes a
// session watching through another's (LISTEN/NOTIFY), with the mailbox
// and its HIGHESTMODSEQ; a change only this node made is not heard twice.
func TestWatchAcrossNodes(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	if err := a.AddDomain(ctx, store.Domain{Name: "a.example"}); err != nil {
		t.Fatal(err)
	}
	u, err := a.AddUser(ctx, store.User{Address: "alice@a.example"})
	if err != nil {
		t.Fatal(err)
	}
	onB, stopB := b.Watch(u.ID)
	defer stopB()
	onA, stopA := a.Watch(u.ID)
	defer stopA()
	m := &store.Message{QueueID: store.NewQueueID(), Body: strings.NewReader("Subject: x\r\n\r\nx\r\n"),
		Local: []store.LocalTarget{{UserID: u.ID, Mailbox: store.Inbox}}}
	if err := a.Accept(ctx, m); err != nil {
		t.Fatal(err)
	}
	st, err := b.MailboxStatus(ctx, u.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-onB:
		if c.MailboxID != st.ID || c.HighestModSeq != st.HighestModSeq {
			t.Errorf("node B woke with %+v, want mailbox %d at MODSEQ %d", c, st.ID, st.HighestModSeq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node B was not woken by a delivery on node A")
	}
	select {
	case <-onA:
	default:
		t.Fatal("node A's own watcher was not woken before Accept returned")
	}
	select {
	case c := <-onA:
		t.Errorf("node A woken again by its own NOTIFY: %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestQueueLeases: two nodes claiming at once never claim the same entry;
// a node starting releases its own claims only; a dead node's claims are
// taken over once their lease has ended.
func TestQueueLeases(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	const n = 200
	for i := range n {
		m := &store.Message{QueueID: store.NewQueueID(), Body: strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)),
			Remote: []store.QueuedRecipient{{Address: "far@remote.example", Domain: "remote.example"}}}
		if err := a.Accept(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	claimed := map[int64]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range []struct {
		name string
		s    *Store
	}{{"a", a}, {"b", b}} {
		wg.Go(func() {
			for {
				es, err := node.s.ClaimDue(ctx, now, time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(es) == 0 {
					return
				}
				mu.Lock()
				for _, e := range es {
					if other, ok := claimed[e.ID]; ok {
						t.Errorf("entry %d claimed by %s and %s", e.ID, other, node.name)
					}
					claimed[e.ID] = node.name
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != n {
		t.Fatalf("%d entries claimed, want %d", len(claimed), n)
	}
	// B restarts: it releases its own claims, not A's.
	if err := b.ReleaseClaims(ctx, nil, now); err != nil {
		t.Fatal(err)
	}
	st, _ := a.QueueStats(ctx)
	aClaims := 0
	for _, who := range claimed {
		if who == "a" {
			aClaims++
		}
	}
	if st.Sending != aClaims {
		t.Errorf("after B released its claims, %d entries are active; A holds %d", st.Sending, aClaims)
	}
	// A dies: once its lease (a minute) has ended, B takes its entries.
	es, err := b.ClaimDue(ctx, now.Add(30*time.Second), time.Minute, n)
	if err != nil || len(es) != n-aClaims {
		t.Fatalf("B claimed %d entries before A's lease ended (%v), want only its own released %d", len(es), err, n-aClaims)
	}
	es, err = b.ClaimDue(ctx, now.Add(61*time.Second), time.Minute, n)
	if err != nil || len(es) != aClaims {
		t.Fatalf("B took over %d of A's %d claims after their lease ended (%v)", len(es), aClaims, err)
	}
}

// TestDeleteUserDropsBodies: deleting a user drops the bodies only they
// held, and keeps one another user holds too.
func TestDeleteUserDropsBodies(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, fresh(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddDomain(ctx, store.Domain{Name: "a.example"})
	alice, _ := s.AddUser(ctx, store.User{Address: "alice@a.example"})
	bob, _ := s.AddUser(ctx, store.User{Address: "bob@a.example"})
	big := strings.Repeat("x", chunkSize+10) // chunked
	for _, to := range [][]int64{{alice.ID}, {alice.ID, bob.ID}} {
		m := &store.Message{QueueID: store.NewQueueID(), Body: strings.NewReader("Subject: x\r\n\r\n" + big)}
		for _, id := range to {
			m.Local = append(m.Local, store.LocalTarget{UserID: id, Mailbox: store.Inbox})
		}
		if err := s.Accept(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteUser(ctx, alice.Address); err != nil {
		t.Fatal(err)
	}
	var messages, chunks int
	s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM message_chunks)`).Scan(&messages, &chunks)
	if messages != 1 || chunks != 2 {
		t.Errorf("after deleting alice: %d messages, %d chunks; want bob's one message in 2 chunks", messages, chunks)
	}
}

// atOnce calls fn n times at once, on nodes a and b in turn.
func atOnce(n int, a, b *Store, fn func(*Store)) {
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() { fn(s) })
	}
	wg.Wait()
}

// TestSharedCounts: two nodes counting one key at once take exactly as
// many events as the limit allows; the day's limit holds beside the
// hour's; another key is apart.
func TestSharedCounts(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	now := time.Now()
	var taken atomic.Int64
	atOnce(20, a, b, func(s *Store) {
		_, _, ok, err := s.TakeCount(ctx, "send:messages:alice", now, 7, 0)
		if err != nil {
			t.Error(err)
		}
		if ok {
			taken.Add(1)
		}
	})
	if n := taken.Load(); n != 7 {
		t.Errorf("%d events taken under a limit of 7 an hour", n)
	}
	hour, day, ok, err := a.TakeCount(ctx, "send:messages:alice", now.Add(2*time.Hour), 7, 8)
	if err != nil || !ok || hour != 0 || day != 7 {
		t.Errorf("two hours later: hour %d, day %d, taken %v, %v; want 0, 7, taken", hour, day, ok, err)
	}
	if _, day, ok, _ := a.TakeCount(ctx, "send:messages:alice", now.Add(3*time.Hour), 7, 8); ok || day != 8 {
		t.Errorf("over the day's limit: day %d, taken %v; want 8, refused", day, ok)
	}
	if _, _, ok, _ := b.TakeCount(ctx, "send:messages:bob", now, 7, 8); !ok {
		t.Error("another key was refused")
	}
}

// TestLoginFailures: failures counted on two nodes add up, per key, within
// the window; older ones no longer count; a key's failures can be
// forgotten without touching the others'.
func TestLoginFailures(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	now := time.Now()
	const window = time.Minute
	keys := []string{"c 127.0.0.5/32", "p 127.0.0.5/32 bob@example.test"}
	atOnce(10, a, b, func(s *Store) {
		if _, err := s.AddLoginFailures(ctx, keys, now, window); err != nil {
			t.Error(err)
		}
	})
	counts, err := b.AddLoginFailures(ctx, []string{keys[1], "a bob@example.test"}, now.Add(time.Second), window)
	if err != nil || !reflect.DeepEqual(counts, []int{11, 1}) {
		t.Errorf("the 11th failure of the pair: %v %v, want [11 1]", counts, err)
	}
	if counts, err := a.LoginFailureCounts(ctx, append(keys, "c 127.0.0.6/32"), now.Add(2*time.Second), window); err != nil || !reflect.DeepEqual(counts, []int{10, 11, 0}) {
		t.Errorf("counts: %v %v, want [10 11 0]", counts, err)
	}
	if counts, _ := a.LoginFailureCounts(ctx, keys, now.Add(window+window/6), window); !reflect.DeepEqual(counts, []int{0, 0}) {
		t.Errorf("a window later: %v, want none", counts)
	}
	if err := a.ForgetLoginFailures(ctx, keys[1]); err != nil {
		t.Fatal(err)
	}
	if counts, _ := b.LoginFailureCounts(ctx, keys, now, window); !reflect.DeepEqual(counts, []int{10, 0}) {
		t.Errorf("after the pair was forgotten: %v, want [10 0]", counts)
	}
}

// TestIndexedOnce: two nodes' indexers on one store index each message
// once between them (one holds the indexing's lease), where each would
// otherwise index every message.
func TestIndexedOnce(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	if err := a.AddDomain(ctx, store.Domain{Name: "a.example"}); err != nil {
		t.Fatal(err)
	}
	u, err := a.AddUser(ctx, store.User{Address: "alice@a.example"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		m := &store.Message{QueueID: store.NewQueueID(), Body: strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)),
			Local: []store.LocalTarget{{UserID: u.ID, Mailbox: store.Inbox}}}
		if err := a.Accept(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var counts [2]int
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			var err error
			counts[i], err = textindex.New(s, 1<<20, slog.New(slog.DiscardHandler)).Drain(ctx)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if counts[0]+counts[1] != n {
		t.Errorf("the nodes indexed %v messages: want %d between them", counts, n)
	}
	if ids, _ := b.Unindexed(ctx, 10); len(ids) != 0 {
		t.Errorf("%d messages left unindexed", len(ids))
	}
}

// TestLeases: one node holds a lease and renews it; the other gets it only
// once it has run out; a node restarted under the same name has it back.
func TestLeases(t *testing.T) {
	ctx := t.Context()
	url := fresh(t)
	open := func(node string) *Store {
		t.Helper()
		s, err := Open(ctx, url, Options{Node: node})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open("node-a"), open("node-b")
	now := time.Now()
	take := func(s *Store, at time.Time) bool {
		t.Helper()
		ok, err := s.TakeLease(ctx, "reports", at, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take(a, now) || take(b, now.Add(time.Second)) || !take(a, now.Add(50*time.Second)) {
		t.Fatal("A takes the lease, B does not, A renews it")
	}
	if take(b, now.Add(100*time.Second)) || !take(b, now.Add(111*time.Second)) {
		t.Fatal("B gets the lease once A's renewal (until 110 s) has run out, not before")
	}
	if !take(open("node-b"), now.Add(112*time.Second)) {
		t.Error("node B restarted (the same name) does not hold its lease")
	}
}
