package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestIMAPSearchIndex: SEARCH finds what a reader sees (text parts
// decoded from base64 and quoted-printable in their charsets, HTML without
// its markup), and gives the same answers before the search index has the
// messages and after, through NOT and OR, and once some are expunged.
func TestIMAPSearchIndex(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO search.example", "250 ")
	send := func(body string) {
		c.sendMail("sender@remote.example", []string{"alice@example.test"}, body)
	}
	send("From: Jörg <jorg@remote.example>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgQmVybGlu\r\n")
	send("From: shop@remote.example\r\nSubject: price list\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me, soft=\r\nware for sale\r\n")
	send("From: news@remote.example\r\nSubject: newsletter\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n" +
		"<html><body><p>Fish &amp; <b>chips</b> on Friday</p></body></html>\r\n")
	for i := range 20 {
		send(fmt.Sprintf("From: filler%d@remote.example\r\nSubject: filler %d\r\n\r\nnothing to see in number %d\r\n", i, i, i))
	}
	im := dialIMAPS(t, s.imapsAddr)
	im.cmd("LOGIN alice@example.test secret-alice", "OK")
	im.cmd("SELECT INBOX", "OK")
	searches := []struct{ query, want string }{
		{"BODY {7+}\r\ngrüße", "1"},                         // base64, UTF-8
		{"CHARSET UTF-8 TEXT {5+}\r\ncafé", "2"},            // quoted-printable, ISO-8859-1
		{"BODY software", "2"},                              // across a soft line break
		{"BODY \"fish & chips\"", "3"},                      // HTML, a character reference
		{"BODY \"<b>\"", ""},                                // markup is not text
		{"BODY R3LDvMOf", ""},                               // nor is base64
		{"SUBJECT {7+}\r\ngrüße", "1"},                      // an encoded word
		{"FROM {5+}\r\njörg", "1"},                          // a display name
		{"FROM filler1", "14 15 16 17 18 19 20 21 22 23 5"}, // filler1, filler10..19
		{"TEXT \"delivered-to: alice\"", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23"},
		{"NOT BODY number", "1 2 3"},
		{"OR BODY berlin SUBJECT \"filler 7\"", "1 11"},
		{"BODY ip", "3"}, // too short for the index: every message is read
		{"HEADER Subject list", "2"},
	}
	run := func(when string) {
		t.Helper()
		for _, q := range searches {
			got := im.cmd("SEARCH "+q.query, "OK")
			want := strings.TrimSpace("* SEARCH " + sortedNumbers(q.want))
			if len(got) != 1 || sortedNumbers(strings.TrimPrefix(got[0], "* SEARCH")) != sortedNumbers(q.want) {
				t.Errorf("%s: SEARCH %q = %q, want %q", when, q.query, got, want)
			}
		}
	}
	// SORT's keys come from the index once it has them; derived from the
	// messages before: the same order either way.
	sorts := []string{"UID SORT (REVERSE DATE) UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL", "SORT (FROM REVERSE DISPLAYFROM) UTF-8 ALL",
		"SORT (CC SIZE) UTF-8 ALL", "SORT (DISPLAYTO TO ARRIVAL) UTF-8 NOT BODY number"}
	var before []string
	for _, q := range sorts {
		before = append(before, strings.Join(im.cmd(q, "OK"), "\n"))
	}
	run("before the index has them")
	waitIndexed(t, s, 23)
	run("from the index")
	for i, q := range sorts {
		if after := strings.Join(im.cmd(q, "OK"), "\n"); after != before[i] {
			t.Errorf("%s: %q before the index had the messages, %q after", q, before[i], after)
		}
	}
	if got := im.cmd("SORT (SUBJECT) UTF-8 ALL", "OK"); len(got) != 1 || strings.TrimSpace(got[0]) != "* SORT 4 5 14 15 16 17 18 19 20 21 22 23 6 7 8 9 10 11 12 13 1 3 2" {
		t.Errorf("SORT (SUBJECT) = %q", got)
	}
	im.cmd("STORE 1,3 +FLAGS (\\Deleted)", "OK")
	im.cmd("EXPUNGE", "OK")
	if got := im.cmd("SEARCH BODY chips", "OK"); len(got) != 1 || strings.TrimSpace(got[0]) != "* SEARCH" {
		t.Errorf("after EXPUNGE, SEARCH BODY chips = %q", got)
	}
	if got := im.cmd("SEARCH BODY software", "OK"); len(got) != 1 || strings.TrimSpace(got[0]) != "* SEARCH 1" {
		t.Errorf("after EXPUNGE, SEARCH BODY software = %q, want message 1 (was 2)", got)
	}
	// The server keeps what SORT read: expunged messages leave it, new
	// ones join it in their place.
	if got := im.cmd("SORT (SUBJECT) UTF-8 ALL", "OK"); len(got) != 1 || strings.TrimSpace(got[0]) != "* SORT 2 3 12 13 14 15 16 17 18 19 20 21 4 5 6 7 8 9 10 11 1" {
		t.Errorf("after EXPUNGE, SORT (SUBJECT) = %q", got)
	}
	send("From: early@remote.example\r\nSubject: Re: aardvark\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\nnew\r\n")
	im.cmd("NOOP", "OK")
	waitIndexed(t, s, 24)
	if got := im.cmd("SORT (SUBJECT) UTF-8 ALL", "OK"); len(got) != 1 || strings.TrimSpace(got[0]) != "* SORT 22 2 3 12 13 14 15 16 17 18 19 20 21 4 5 6 7 8 9 10 11 1" {
		t.Errorf("after new mail, SORT (SUBJECT) = %q", got)
	}
	if got := im.cmd("SORT (DATE) UTF-8 ALL", "OK"); len(got) != 1 || !strings.HasPrefix(strings.TrimSpace(got[0]), "* SORT 22 ") {
		t.Errorf("after new mail, SORT (DATE) = %q, want the message of 2001 first", got)
	}
}

// sortedNumbers normalises a SEARCH result's numbers for comparison.
func sortedNumbers(s string) string {
	var n []int
	for f := range strings.FieldsSeq(s) {
		var i int
		fmt.Sscan(f, &i)
		n = append(n, i)
	}
	for i := range n {
		for j := i + 1; j < len(n); j++ {
			if n[j] < n[i] {
				n[i], n[j] = n[j], n[i]
			}
		}
	}
	return strings.Trim(fmt.Sprint(n), "[]")
}

// waitIndexed waits until the server's log says the indexer has indexed
// at least n messages.
func waitIndexed(t *testing.T, s *server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		total := 0
		for l := range strings.Lines(s.logs()) {
			if strings.Contains(l, "search index: messages indexed") {
				var k int
				if _, v, ok := strings.Cut(l, "messages="); ok {
					fmt.Sscan(v, &k)
				}
				total += k
			}
		}
		if total >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the indexer indexed %d of %d messages in 20s:\n%s", total, n, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
