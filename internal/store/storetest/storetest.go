// Package storetest is the conformance suite that every store.Store
// implementation must pass. An implementation's own tests call Run with a
// function that opens a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... })
//	}
//
// The suite checks behaviour only through the store.Store interface, so
// what it demands is what callers may rely on.
package storetest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call, independent of every other store it returned, since the
// subtests run in parallel; Run closes each store when its subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	RunGroups(t, open, Groups...)
}

// Groups are the parts of the suite, by what they exercise.
var Groups = []string{"domain", "user", "alias", "accept", "read", "credential", "queue", "suppression", "mail", "search", "keys", "events", "apikeys", "webhooks", "sessions"}

// RunGroups runs the parts of the suite named, for a backend built part by
// part: the tests of the other parts are skipped, saying they are pending
// on this backend, so that the count of what is not done yet shows.
func RunGroups(t *testing.T, open func(t *testing.T) store.Store, groups ...string) {
	parts := map[string][]test{
		"domain": domainTests(), "user": userTests(), "alias": aliasTests(), "accept": acceptTests(), "read": readTests(),
		"credential": credentialTests(), "queue": queueTests(), "suppression": suppressionTests(), "mail": mailTests(),
		"search": searchTests(), "keys": dkimTests(), "events": eventTests(), "apikeys": apiKeyTests(), "webhooks": webhookTests(), "sessions": sessionTests(),
	}
	for _, g := range Groups {
		run := slices.Contains(groups, g)
		for _, tc := range parts[g] {
			t.Run(tc.name, func(t *testing.T) {
				if !run {
					t.Skipf("pending on this backend (group %q)", g)
				}
				t.Parallel()
				s := open(t)
				t.Cleanup(func() {
					if err := s.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
				tc.run(t, s)
			})
		}
	}
}

// test is one entry of the suite: a sentence saying what must hold, and
// the check, run against a fresh store.
type test struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// received is the internal date of the suite's messages: second
// precision (what IMAP shows) in a zone other than UTC.
var received = time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("+0200", 2*3600))

func addDomain(t *testing.T, s store.Store, name string) {
	t.Helper()
	if err := s.AddDomain(t.Context(), store.Domain{Name: name}); err != nil {
		t.Fatalf("AddDomain(%s): %v", name, err)
	}
}

// addUser adds a user, and its domain when that is not there yet.
func addUser(t *testing.T, s store.Store, address string) store.User {
	t.Helper()
	ctx := t.Context()
	_, domain, _ := strings.Cut(address, "@")
	if _, err := s.Domain(ctx, domain); errors.Is(err, store.ErrNotFound) {
		addDomain(t, s, domain)
	}
	u, err := s.AddUser(ctx, store.User{Address: address, PasswordHash: "hash-of-" + address})
	if err != nil {
		t.Fatalf("AddUser(%s): %v", address, err)
	}
	return u
}

// inbox is a copy of a message for u's INBOX, with the prefix that final
// delivery would add.
func inbox(u store.User) store.LocalTarget {
	return store.LocalTarget{
		UserID:  u.ID,
		Mailbox: store.Inbox,
		Prefix:  []byte("Return-Path: <sender@remote.example>\r\nDelivered-To: " + u.Address + "\r\n"),
	}
}

// message builds a message with the given body for the given copies.
func message(body []byte, subject string, to ...store.LocalTarget) *store.Message {
	return &store.Message{
		QueueID: store.NewQueueID(),
		SMTPEnvelope: store.SMTPEnvelope{
			MailFrom:   "sender@remote.example",
			EnvID:      "env-" + subject,
			Client:     "192.0.2.1",
			Recipients: []store.SMTPRecipient{{Address: "rcpt@local.example", Notify: []string{"FAILURE"}}},
		},
		Received: received,
		Body:     bytes.NewReader(body),
		Size:     int64(len(body)),
		Local:    to,
		From:     "Sender <sender@remote.example>",
		Subject:  subject,
	}
}

func textBody(subject string) []byte {
	return []byte("From: Sender <sender@remote.example>\r\nSubject: " + subject + "\r\n\r\nBody of " + subject + ".\r\n")
}

// bigBody is a body well above any sensible inline limit (2 MiB and an odd
// tail), of arbitrary octets, so that a byte lost or changed anywhere shows.
func bigBody() []byte {
	b := make([]byte, 2<<20+4097)
	r := rand.NewChaCha8([32]byte{'m', 'a', 'i', 'l', 'r', 'o', 'o', 'm'})
	r.Read(b)
	return b
}

func accept(t *testing.T, s store.Store, m *store.Message) {
	t.Helper()
	if err := s.Accept(t.Context(), m); err != nil {
		t.Fatalf("Accept(%q): %v", m.Subject, err)
	}
}

func status(t *testing.T, s store.Store, userID int64, mailbox string) store.MailboxStatus {
	t.Helper()
	st, err := s.MailboxStatus(t.Context(), userID, mailbox)
	if err != nil {
		t.Fatalf("MailboxStatus(%d, %s): %v", userID, mailbox, err)
	}
	return st
}

func list(t *testing.T, s store.Store, userID int64, mailbox string) []store.MessageInfo {
	t.Helper()
	ms, err := s.Messages(t.Context(), userID, mailbox)
	if err != nil {
		t.Fatalf("Messages(%d, %s): %v", userID, mailbox, err)
	}
	return ms
}

// read returns a message as OpenMessage gives it.
func read(t *testing.T, s store.Store, userID int64, mailbox string, uid uint32) ([]byte, store.MessageInfo) {
	t.Helper()
	rc, mi, err := s.OpenMessage(t.Context(), userID, mailbox, uid)
	if err != nil {
		t.Fatalf("OpenMessage(%d, %s, %d): %v", userID, mailbox, uid, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read message %d: %v", uid, err)
	}
	return b, mi
}

func user(t *testing.T, s store.Store, address string) store.User {
	t.Helper()
	u, err := s.User(t.Context(), address)
	if err != nil {
		t.Fatalf("User(%s): %v", address, err)
	}
	return u
}

// wantErr fails the test unless err matches target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// wantRecent fails the test unless tm lies between start (to the second)
// and now.
func wantRecent(t *testing.T, what string, tm, start time.Time) {
	t.Helper()
	if tm.Before(start.Truncate(time.Second)) || tm.After(time.Now()) {
		t.Errorf("%s = %v, want a time between %v and now", what, tm, start)
	}
}
