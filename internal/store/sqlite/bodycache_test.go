package sqlite

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"mailroom/internal/store"
)

func TestBodyCacheLimit(t *testing.T) {
	c := newBodyCache(100)
	c.put(1, make([]byte, 40))
	c.put(2, make([]byte, 40))
	c.put(3, make([]byte, 40)) // 1 goes
	if _, ok := c.get(1); ok {
		t.Error("the oldest body stayed past the limit")
	}
	for _, id := range []int64{2, 3} {
		if _, ok := c.get(id); !ok {
			t.Errorf("body %d is gone", id)
		}
	}
	c.put(4, make([]byte, 101)) // larger than the whole cache: not kept
	if _, ok := c.get(4); ok || c.size != 80 {
		t.Errorf("an oversized body was kept (size %d)", c.size)
	}
	c.put(2, []byte("new")) // a reused ID replaces
	if b, _ := c.get(2); string(b) != "new" || c.size != 43 {
		t.Errorf("replaced body %q, size %d", b, c.size)
	}
	c.drop(2)
	c.drop(3)
	if c.size != 0 || len(c.m) != 0 {
		t.Errorf("after dropping all: size %d, %d entries", c.size, len(c.m))
	}
	for i := range 1000 { // the order list does not grow without bound
		c.put(int64(i), []byte("x"))
		c.drop(int64(i))
	}
	if len(c.order) > 200 {
		t.Errorf("order holds %d IDs for %d bodies", len(c.order), len(c.m))
	}
}

// TestBodyCacheRowIDReuse: SQLite gives a deleted message's row ID to the
// next message; the relay must then read the new message, never the
// cached body of the old one, whether the new body is cached or kept in a
// blob file.
func TestBodyCacheRowIDReuse(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{InlineLimit: 4096})
	defer s.Close()
	queue := func(body []byte) int64 {
		t.Helper()
		m := newMessage(body, "relayed")
		m.Remote = []store.QueuedRecipient{{Address: "bob@remote.example", Domain: "remote.example"}}
		if err := s.Accept(ctx, m); err != nil {
			t.Fatal(err)
		}
		es, err := s.ClaimDue(ctx, time.Now().Add(time.Minute), time.Hour, 10)
		if err != nil || len(es) != 1 {
			t.Fatalf("ClaimDue: %v, %v", es, err)
		}
		return es[0].ID
	}
	read := func(messageID int64) []byte {
		t.Helper()
		rc, err := s.OpenQueued(ctx, messageID)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	deliver := func(entryID int64) {
		t.Helper()
		if err := s.RecordResults(ctx, []store.QueueResult{{ID: entryID, State: store.StateDelivered}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, second := range [][]byte{bytes.Repeat([]byte("B"), 100), bytes.Repeat([]byte("C"), 5000)} {
		first := bytes.Repeat([]byte("A"), 100)
		e1 := queue(first)
		msg1 := s.messageOf(t, e1)
		if got := read(msg1); !bytes.Equal(got, first) {
			t.Fatalf("first body: %q", got)
		}
		deliver(e1)
		e2 := queue(second)
		msg2 := s.messageOf(t, e2)
		if msg2 != msg1 {
			t.Logf("row ID not reused (%d, %d): the test proves less", msg1, msg2)
		}
		if got := read(msg2); !bytes.Equal(got, second) {
			t.Fatalf("second message (%d bytes) read as %.20q…", len(second), got)
		}
		deliver(e2)
	}
}

// messageOf is the message ID of queue entry id.
func (s *Store) messageOf(t *testing.T, id int64) int64 {
	t.Helper()
	var m int64
	if err := s.reads.db.QueryRow(`SELECT message_id FROM queue WHERE id = ?`, id).Scan(&m); err != nil {
		t.Fatal(err)
	}
	return m
}
