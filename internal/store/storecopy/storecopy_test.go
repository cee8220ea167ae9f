package storecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/store/postgres"
	"mailroom/internal/store/postgres/pgtest"
	"mailroom/internal/store/sqlite"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	if server, err = pgtest.Start(pgtest.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

func openPG(t *testing.T, db string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), server.URL(db), postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPG(t *testing.T) (*postgres.Store, string) {
	db, err := server.CreateDB(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return openPG(t, db), db
}

// filled is an embedded store with something in every table: users with
// their secrets, mail with flags, an expunge, a large body, a snapshot,
// queued recipients (one held), keys, reports, counts.
func filled(t *testing.T) *sqlite.Store {
	t.Helper()
	ctx := t.Context()
	s, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Unix(1_765_000_000, 123456789)
	must(s.AddDomain(ctx, store.Domain{Name: "example.test", CatchAll: "alice@example.test", Created: now}))
	alice, err := s.AddUser(ctx, store.User{Address: "alice@example.test", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA", SCRAMSHA256: "4096:c2FsdA==:a2V5:c2Vy", QuotaBytes: 1 << 30})
	must(err)
	bob, err := s.AddUser(ctx, store.User{Address: "bob@example.test", PasswordHash: "$argon2id$bob"})
	must(err)
	must(s.SetUserSettings(ctx, "bob@example.test", store.UserSettings{RequireSCRAM: true, MaxMessagesPerHour: 50}))
	must(s.AddAlias(ctx, store.Alias{Address: "team@example.test", Targets: []string{"alice@example.test", "bob@example.test"}, Created: now}))
	must(s.AddAppPassword(ctx, "alice@example.test", "phone", "c0ffee"))
	must(s.AddSenderGrant(ctx, "alice@example.test", "@example.test"))
	must(s.AddAPIKey(ctx, store.APIKey{ID: "k1", Name: "shop", Owner: "@example.test", Scopes: []string{"send", "read"}, RatePerMinute: 600, Created: now}, "beef"))
	must(s.Suppress(ctx, store.Suppression{Address: "gone@remote.test", Reason: "550 5.1.1 no such user", Created: now, Until: now.Add(time.Hour)}))
	must(s.AddDKIMKey(ctx, store.DKIMKey{Domain: "example.test", Selector: "s1", Algorithm: store.DKIMEd25519, PrivateKey: []byte{1, 2, 3}, Created: now, SignFrom: now}))
	must(s.AddDMARCReport(ctx, store.DMARCReport{Received: now, Org: "big.test", Email: "r@big.test", ReportID: "42", Begin: now, End: now.Add(time.Hour), Domain: "example.test", Policy: "reject",
		Rows: []store.DMARCRow{{SourceIP: "192.0.2.1", Count: 3, Disposition: "none", DKIM: "pass", SPF: "fail", HeaderFrom: "example.test"}}}))
	must(s.SaveMTASTSPolicy(ctx, store.MTASTSPolicy{Domain: "remote.test", ID: "20260101", Text: "version: STSv1\nmode: enforce\n", Fetched: now, Expires: now.Add(24 * time.Hour)}))
	_, err = s.Secret(ctx, "srs", 32)
	must(err)
	must(s.AddTallies(ctx, []store.Tally{{Kind: "tlsrpt", Period: now.Truncate(24 * time.Hour), Domain: "remote.test", Key: "sts|success", Count: 7}}))
	large := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB: chunks in PostgreSQL, a file here
	for i, body := range [][]byte{[]byte("Subject: one\r\n\r\nfirst\r\n"), append([]byte("Subject: big\r\n\r\n"), large...), []byte("Subject: three\r\n\r\nü\r\n")} {
		m := &store.Message{QueueID: fmt.Sprintf("Q%d", i), Received: now.Add(time.Duration(i) * time.Second), Body: bytes.NewReader(body),
			SMTPEnvelope: store.SMTPEnvelope{MailFrom: "sender@remote.test", Recipients: []store.SMTPRecipient{{Address: "alice@example.test"}, {Address: "x@remote.test", Notify: []string{"FAILURE"}}}},
			Local:        []store.LocalTarget{{UserID: alice.ID, Mailbox: store.Inbox, Prefix: []byte("Return-Path: <sender@remote.test>\r\n")}},
			Remote:       []store.QueuedRecipient{{Address: "x@remote.test", Domain: "remote.test", Notify: []string{"FAILURE"}, ORcpt: "rfc822;x@remote.test"}},
			From:         "sender@remote.test", Subject: fmt.Sprint(i), Summary: []byte{byte(i)}}
		m.Log = &store.LoggedMessage{QueueID: m.QueueID, Direction: store.Inbound, Domain: "example.test", Sender: "sender@remote.test", Subject: fmt.Sprint(i),
			Recipients: []string{"alice@example.test", "x@remote.test"}, Tags: []string{"t"}, Metadata: map[string]string{"k": "v"}}
		m.Events = []store.Event{{Kind: store.EventReceived, QueueID: m.QueueID, Recipient: "alice@example.test", Domain: "example.test"},
			{Kind: store.EventAccepted, QueueID: m.QueueID, Recipient: "x@remote.test", Domain: "example.test"}}
		must(s.Accept(ctx, m))
	}
	_, err = s.SetFlags(ctx, alice.ID, store.Inbox, store.FlagChange{UIDs: []uint32{1, 2}, Op: store.FlagsAdd, Flags: []string{`\Seen`, "$Label1"}})
	must(err)
	_, err = s.Expunge(ctx, alice.ID, store.Inbox, []uint32{3})
	must(err)
	_, err = s.CreateMailbox(ctx, bob.ID, "Projects/2026", "")
	must(err)
	_, err = s.Append(ctx, bob.ID, "Projects/2026", []store.AppendMessage{{Body: strings.NewReader("Subject: appended\r\n\r\nx\r\n"), Flags: []string{`\Flagged`}, InternalDate: now}})
	must(err)
	must(s.SetSubscribed(ctx, bob.ID, "Projects/2026", true))
	st, err := s.MailboxStatus(ctx, alice.ID, store.Inbox)
	must(err)
	must(s.SaveSnapshot(ctx, alice.ID, store.Snapshot{MailboxID: st.ID, ModSeq: st.HighestModSeq, Data: []byte("snapshot")}))
	_, err = s.SetHeld(ctx, "Q1", true)
	must(err)
	_, err = s.AddWebhook(ctx, store.Webhook{Owner: "@example.test", URL: "https://hooks.example.test/in", Events: []string{"received", "inbound"}, Secrets: []string{"s1"}, Created: now})
	must(err)
	_, err = s.CountEvents(ctx, 2) // some counted (with their webhook deliveries), some not
	must(err)
	hd, err := s.ClaimHookDeliveries(ctx, time.Now(), time.Minute, 1)
	must(err)
	must(s.RecordHookResults(ctx, []store.HookResult{{DeliveryID: hd[0].ID, State: store.HookPending, NextAttempt: now,
		Attempt: store.HookAttempt{Time: now, Status: 500, Error: "500 Internal Server Error", Duration: time.Second}}}))
	return s
}

// TestCopy: everything of an embedded store reaches PostgreSQL as it was
// (what IMAP clients and the queue know included), the copy verifies,
// and the PostgreSQL store serves it.
func TestCopy(t *testing.T) {
	ctx := t.Context()
	src := filled(t)
	dst, _ := newPG(t)
	var seen []string
	res, err := Copy(ctx, src, dst, Options{Table: func(name string, rows int64) { seen = append(seen, name) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed || len(seen) != len(store.Tables) {
		t.Errorf("resumed %v, tables %v", res.Resumed, seen)
	}
	for _, tb := range store.Tables {
		if res.Tables[tb.Name].Rows == 0 && tb.Name != "expunged" {
			t.Errorf("%s: nothing copied: the test fills every table", tb.Name)
		}
	}
	if res.Tables["expunged"].Rows != 1 || res.Tables["queue"].Rows != 3 {
		t.Errorf("expunged %v, queue %v", res.Tables["expunged"], res.Tables["queue"])
	}
	// The copy is verified against the source afresh, and the PostgreSQL
	// store gives what the embedded one does.
	if err := Verify(ctx, src, dst, nil); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"alice@example.test", "bob@example.test"} {
		a, err := src.User(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.User(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("user %s: %+v, copied %+v", addr, a, b)
		}
		boxes, err := src.ListMailboxes(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range boxes {
			sa, _ := src.MailboxStatus(ctx, a.ID, mb.Name)
			sb, err := dst.MailboxStatus(ctx, a.ID, mb.Name)
			if err != nil || sa != sb {
				t.Errorf("%s %s: %+v, copied %+v (%v)", addr, mb.Name, sa, sb, err)
			}
			ma, _ := src.Messages(ctx, a.ID, mb.Name)
			mb2, _ := dst.Messages(ctx, a.ID, mb.Name)
			if (len(ma) > 0 || len(mb2) > 0) && !reflect.DeepEqual(ma, mb2) {
				t.Errorf("%s %s: messages %+v, copied %+v", addr, mb.Name, ma, mb2)
			}
			for _, m := range ma {
				if a, b := read(t, src, a.ID, mb.Name, m.UID), read(t, dst, a.ID, mb.Name, m.UID); a != b {
					t.Errorf("%s %s %d: the body differs (%d and %d octets)", addr, mb.Name, m.UID, len(a), len(b))
				}
			}
		}
	}
	qa, _ := src.QueueStats(ctx)
	qb, _ := dst.QueueStats(ctx)
	if !reflect.DeepEqual(qa, qb) {
		t.Errorf("queue %+v, copied %+v", qa, qb)
	}
	// New rows take ids after the copied ones.
	u, err := dst.AddUser(ctx, store.User{Address: "carol@example.test"})
	if err != nil || u.ID <= 2 {
		t.Errorf("a new user after the copy: %+v %v", u, err)
	}
	// A second copy into the same database is refused.
	if _, err := Copy(ctx, src, dst, Options{}); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("a copy into a store in use: %v", err)
	}
}

func read(t *testing.T, s store.Store, user int64, mailbox string, uid uint32) string {
	t.Helper()
	r, _, err := s.OpenMessage(t.Context(), user, mailbox, uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// failing fails its Import after a number of batches, as a copy cut
// short would.
type failing struct {
	Destination
	left int
}

var errCut = errors.New("cut short")

func (f *failing) Import(ctx context.Context, t store.Table, rows []store.Row) error {
	if f.left == 0 {
		return errCut
	}
	f.left--
	return f.Destination.Import(ctx, t, rows)
}

// TestCopyResumes: a copy cut short in the middle of a table goes on
// where it stopped, and the result verifies (no row twice, none lost).
func TestCopyResumes(t *testing.T) {
	ctx := t.Context()
	src := filled(t)
	dst, db := newPG(t)
	for _, left := range []int{3, 9} {
		if _, err := Copy(ctx, src, &failing{dst, left}, Options{BatchRows: 2}); !errors.Is(err, errCut) {
			t.Fatalf("cut after %d batches: %v", left, err)
		}
	}
	dst = openPG(t, db) // as a new run would
	var last, total int
	res, err := Copy(ctx, src, dst, Options{BatchRows: 2, Progress: func(d, n int) { last, total = d, n }})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Copied == 0 || last != total {
		t.Errorf("resumed %v, copied %d, progress %d/%d", res.Resumed, res.Copied, last, total)
	}
	var rows int64
	for _, s := range res.Tables {
		rows += s.Rows
	}
	if res.Copied >= rows {
		t.Errorf("the resumed run copied %d rows of %d: it began again", res.Copied, rows)
	}
}

// TestCopyFindsDifferences: a destination that differs from the source
// (a row changed after it was copied) fails verification, naming the
// table.
func TestCopyFindsDifferences(t *testing.T) {
	ctx := t.Context()
	src := filled(t)
	dst, _ := newPG(t)
	if _, err := Copy(ctx, src, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := src.Unsuppress(ctx, "gone@remote.test"); err != nil {
		t.Fatal(err)
	}
	err := Verify(ctx, src, dst, nil)
	if err == nil || !strings.Contains(err.Error(), "suppressions: the source has 0 rows") {
		t.Errorf("verification after a change: %v", err)
	}
}
