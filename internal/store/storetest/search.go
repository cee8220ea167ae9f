package storetest

import (
	"bytes"
	"fmt"
	"io"
	msg "mailroom/internal/message"
	"slices"
	"testing"
	"time"

	"mailroom/internal/store"
)

func searchTests() []test {
	return []test{
		{"messages in mailboxes wait to be indexed; queued ones do not", testUnindexed},
		{"text candidates: index matches by field, unindexed messages, prefixes; never fewer", testTextCandidates},
		{"expunged and copied messages leave and keep their index entries", testIndexLifecycle},
		{"SORT's rows: dates, sizes, and keys once indexed", testSortRows},
	}
}

// indexAll indexes every waiting message as the indexer would, with the
// body's text as both halves unless texts says otherwise.
func indexAll(t *testing.T, s store.Store, texts map[int64]store.IndexedText) {
	t.Helper()
	ctx := t.Context()
	ids, err := s.Unindexed(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var batch []store.IndexedText
	for _, id := range ids {
		it, ok := texts[id]
		if !ok {
			rc, err := s.OpenQueued(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			head, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
			it = store.IndexedText{Header: head, Body: body}
		}
		it.MessageID = id
		batch = append(batch, it)
	}
	if err := s.IndexTexts(ctx, batch); err != nil {
		t.Fatal(err)
	}
}

func testUnindexed(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	accept(t, s, queuedMessage(textBody("only queued"), "x@remote.example"))
	accept(t, s, message(textBody("delivered"), "delivered", inbox(u)))
	appendText(t, s, u.ID, "Archive", "appended")
	ids, err := s.Unindexed(ctx, 10)
	if err != nil || len(ids) != 2 || ids[0] >= ids[1] {
		t.Fatalf("Unindexed = %v, %v; want the delivered and the appended message, oldest first", ids, err)
	}
	if one, _ := s.Unindexed(ctx, 1); !slices.Equal(one, ids[:1]) {
		t.Errorf("Unindexed(limit 1) = %v, want %v", one, ids[:1])
	}
	indexAll(t, s, nil)
	if ids, _ := s.Unindexed(ctx, 10); len(ids) != 0 {
		t.Errorf("after indexing, Unindexed = %v", ids)
	}
	// Indexing again, or a message that is gone, changes nothing.
	if err := s.IndexTexts(ctx, []store.IndexedText{{MessageID: ids0(ids), Body: []byte("x")}, {MessageID: 1 << 40, Body: []byte("y")}}); err != nil {
		t.Errorf("IndexTexts of indexed and missing messages: %v", err)
	}
}

func ids0(ids []int64) int64 {
	if len(ids) == 0 {
		return 0
	}
	return ids[0]
}

func testTextCandidates(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	a := appendText(t, s, u.ID, store.Inbox, "apples and pears")
	b := appendText(t, s, u.ID, store.Inbox, "Grüße aus Köln")
	indexAll(t, s, nil)
	c := appendText(t, s, u.ID, store.Inbox, "not indexed yet")
	accept(t, s, message(textBody("delivered"), "delivered", inbox(u)))
	d := c + 1
	// A superset: the messages that hold the text and every message not
	// indexed, and never an indexed message that lacks a trigram of it.
	for _, tc := range []struct {
		field      store.TextField
		text       string
		must, lack []uint32
	}{
		{store.TextAll, "APPLES", []uint32{a, c, d}, []uint32{b}},
		{store.TextHeader, "pears", []uint32{a, c, d}, []uint32{b}},
		{store.TextBody, "body of apples", []uint32{a, c, d}, []uint32{b}},
		{store.TextBody, "subject: apples", []uint32{c, d}, []uint32{b}},
		{store.TextAll, "grüsse", []uint32{c, d}, []uint32{a}},
		{store.TextAll, "grüße aus köln", []uint32{b, c, d}, []uint32{a}},
		{store.TextAll, `quote"d`, []uint32{c, d}, []uint32{a, b}},
		{store.TextAll, "ap", []uint32{a, b, c, d}, nil},
		{store.TextAll, "delivered-to: alice@a", []uint32{c, d}, nil},
		{store.TextHeader, "zzzz", []uint32{c, d}, []uint32{a, b}},
	} {
		got, err := s.TextCandidates(ctx, u.ID, store.Inbox, tc.field, tc.text)
		if err != nil || !slices.IsSorted(got) {
			t.Errorf("TextCandidates(%v, %q) = %v, %v; want UIDs in order", tc.field, tc.text, got, err)
		}
		for _, uid := range tc.must {
			if !slices.Contains(got, uid) {
				t.Errorf("TextCandidates(%v, %q) = %v, lacks %d", tc.field, tc.text, got, uid)
			}
		}
		for _, uid := range tc.lack {
			if slices.Contains(got, uid) {
				t.Errorf("TextCandidates(%v, %q) = %v, has %d", tc.field, tc.text, got, uid)
			}
		}
	}
	// The prefix is searched too: the delivered message, indexed now, is a
	// candidate for its Delivered-To address, which is only in its prefix.
	indexAll(t, s, nil)
	if got, _ := s.TextCandidates(ctx, u.ID, store.Inbox, store.TextAll, "delivered-to: alice@a"); !slices.Equal(got, []uint32{d}) {
		t.Errorf("TextCandidates of the prefix = %v, want [%d]", got, d)
	}
	if _, err := s.TextCandidates(ctx, u.ID, "Nope", store.TextAll, "apples"); err == nil {
		t.Error("TextCandidates of a missing mailbox: no error")
	}
}

func testIndexLifecycle(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	a := appendText(t, s, u.ID, store.Inbox, "zebra crossing")
	indexAll(t, s, nil)
	res, err := s.Copy(ctx, u.ID, store.Inbox, []uint32{a}, "Archive", false)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Unindexed(ctx, 10); len(ids) != 0 {
		t.Errorf("a copy of an indexed message waits to be indexed again: %v", ids)
	}
	if got, _ := s.TextCandidates(ctx, u.ID, "Archive", store.TextAll, "zebra"); !slices.Equal(got, res.To) {
		t.Errorf("candidates in the copy's mailbox = %v, want %v", got, res.To)
	}
	if _, err := s.Expunge(ctx, u.ID, store.Inbox, []uint32{a}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TextCandidates(ctx, u.ID, "Archive", store.TextAll, "zebra"); !slices.Equal(got, res.To) {
		t.Errorf("after expunging the original, candidates in the copy's mailbox = %v, want %v", got, res.To)
	}
	if _, err := s.Expunge(ctx, u.ID, "Archive", res.To); err != nil {
		t.Fatal(err)
	}
	z := appendText(t, s, u.ID, "Archive", "another animal")
	indexAll(t, s, nil)
	if got, _ := s.TextCandidates(ctx, u.ID, "Archive", store.TextAll, "zebra"); len(got) != 0 {
		t.Errorf("after expunging every copy, candidates = %v (the new message is %d)", got, z)
	}
}

func testSortRows(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	var uids []uint32
	for i := range 12 {
		uids = append(uids, appendText(t, s, u.ID, store.Inbox, fmt.Sprint("sort ", i)))
	}
	all := store.SortSent | store.SortSubject | store.SortFrom | store.SortTo | store.SortCc | store.SortDisplayFrom | store.SortDisplayTo | store.SortArrival | store.SortSize
	rows, err := s.SortRows(ctx, u.ID, store.Inbox, []uint32{uids[11], uids[0], 999}, all)
	if err != nil || len(rows) != 2 || rows[0].UID != uids[0] || rows[1].UID != uids[11] {
		t.Fatalf("SortRows = %+v, %v; want the first and last message, in order", rows, err)
	}
	if r := rows[0]; r.Indexed || r.Size != int64(len(textBody("sort 0"))) || r.Date.IsZero() {
		t.Errorf("an unindexed message's row = %+v", r)
	}
	ids, _ := s.Unindexed(ctx, 100)
	texts := map[int64]store.IndexedText{}
	sent := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	for i, id := range ids {
		texts[id] = store.IndexedText{Header: []byte("h"), Body: []byte("b"), SortKeys: msg.SortKeys{
			Sent: sent.Add(time.Duration(i) * time.Hour), Subject: fmt.Sprint("subject ", i), From: "from", To: "to", Cc: "cc",
			DisplayFrom: "Display From", DisplayTo: "Display To"}}
	}
	texts[ids[3]] = store.IndexedText{Header: []byte("h"), Body: []byte("b")} // no Date field, no keys
	indexAll(t, s, texts)
	rows, err = s.SortRows(ctx, u.ID, store.Inbox, uids, all)
	if err != nil || len(rows) != len(uids) {
		t.Fatalf("SortRows of all = %d rows, %v", len(rows), err)
	}
	for i, r := range rows {
		k := r.Keys
		switch {
		case r.UID != uids[i] || !r.Indexed:
			t.Errorf("row %d = %+v, want UID %d, indexed", i, r, uids[i])
		case i == 3 && (!k.Sent.IsZero() || k.Subject != ""):
			t.Errorf("row %d, indexed without keys: %+v", i, k)
		case i != 3 && (!k.Sent.Equal(sent.Add(time.Duration(i)*time.Hour)) || k.Subject != fmt.Sprint("subject ", i) ||
			k.From != "from" || k.To != "to" || k.Cc != "cc" || k.DisplayFrom != "Display From" || k.DisplayTo != "Display To"):
			t.Errorf("row %d's keys = %+v", i, k)
		}
	}
	// Only the keys asked for.
	rows, _ = s.SortRows(ctx, u.ID, store.Inbox, uids[:1], store.SortSubject)
	if len(rows) != 1 || rows[0].Keys.Subject != "subject 0" || !rows[0].Keys.Sent.IsZero() || rows[0].Keys.From != "" {
		t.Errorf("SortRows of the subject only = %+v", rows)
	}
	if rows, err := s.SortRows(ctx, u.ID, "Nope", uids, all); err == nil {
		t.Errorf("SortRows of a missing mailbox = %v, no error", rows)
	}
}
