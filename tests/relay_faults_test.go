package tests

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"mailroom/internal/dns/dnstest"
)

// hopScript answers the n-th connection (counted from 1) to a fakeHop:
// line is what the client sent, "" for the greeting and "." for the end of
// a message's data. It returns the bytes to write, CRLFs included, all in
// one write; "" closes the connection without a word.
type hopScript func(n int, line string) string

// hopSession is what a fakeHop received on one connection.
type hopSession struct {
	lines    []string // every line outside message data, CRLF removed
	messages []string // each message's data as received, without the final dot
	ended    bool     // the connection is closed
}

// fakeHop is a scripted next hop: a raw TCP listener on its own loopback
// address that answers SMTP as its script says and records everything it
// receives. It never speaks TLS.
type fakeHop struct {
	ln       net.Listener
	port     int
	script   hopScript
	mu       sync.Mutex
	sessions []*hopSession
	conns    []net.Conn
}

// startHop listens on ip (a loopback address of the test's own) and
// answers with script.
func startHop(t *testing.T, ip string, script hopScript) *fakeHop {
	t.Helper()
	return startHopAt(t, ip+":0", script)
}

// startHopAt runs a fake next hop on addr (ip:port).
func startHopAt(t *testing.T, addr string, script hopScript) *fakeHop {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHop{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, script: script}
	go h.accept()
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

func (h *fakeHop) accept() {
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns = append(h.conns, conn)
		h.sessions = append(h.sessions, &hopSession{})
		n := len(h.sessions)
		h.mu.Unlock()
		go h.serve(conn, n)
	}
}

// serve runs one connection: the greeting, then one reply per line; after
// a 354 reply it reads message data up to the lone dot.
func (h *fakeHop) serve(conn net.Conn, n int) {
	defer func() {
		conn.Close()
		h.mu.Lock()
		h.sessions[n-1].ended = true
		h.mu.Unlock()
	}()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	line := ""
	for {
		rep := h.script(n, line)
		if rep == "" {
			return
		}
		if _, err := conn.Write([]byte(rep)); err != nil {
			return
		}
		if strings.HasPrefix(rep, "421") || strings.HasPrefix(strings.ToUpper(line), "QUIT") {
			return
		}
		if strings.HasPrefix(rep, "354") {
			data, ok := readData(r)
			if !ok {
				return
			}
			h.record(n, func(s *hopSession) { s.messages = append(s.messages, data) })
			line = "."
			continue
		}
		l, err := r.ReadString('\n')
		if l != "" {
			h.record(n, func(s *hopSession) { s.lines = append(s.lines, strings.TrimRight(l, "\r\n")) })
		}
		if err != nil {
			return
		}
		line = strings.TrimRight(l, "\r\n")
	}
}

// readData reads message data up to the line with a lone dot.
func readData(r *bufio.Reader) (string, bool) {
	var b strings.Builder
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return b.String() + l, false
		}
		if l == ".\r\n" {
			return b.String(), true
		}
		b.WriteString(l)
	}
}

func (h *fakeHop) record(n int, f func(*hopSession)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h.sessions[n-1])
}

// seen returns a copy of what the hop received so far, per connection.
func (h *fakeHop) seen() []hopSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]hopSession, len(h.sessions))
	for i, s := range h.sessions {
		out[i] = hopSession{lines: append([]string(nil), s.lines...), messages: append([]string(nil), s.messages...), ended: s.ended}
	}
	return out
}

// count counts the command lines starting with prefix (any case) on all
// connections.
func (h *fakeHop) count(prefix string) int {
	n := 0
	for _, s := range h.seen() {
		for _, l := range s.lines {
			if strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(prefix)) {
				n++
			}
		}
	}
	return n
}

// dump is what the hop received, for failure messages.
// messagesWith returns the messages received that contain text.
func (h *fakeHop) messagesWith(text string) []string {
	var out []string
	for _, s := range h.seen() {
		for _, m := range s.messages {
			if strings.Contains(m, text) {
				out = append(out, m)
			}
		}
	}
	return out
}

func (h *fakeHop) dump() string {
	var b strings.Builder
	for i, s := range h.seen() {
		fmt.Fprintf(&b, "connection %d: %q, %d message(s)\n", i+1, s.lines, len(s.messages))
	}
	return b.String()
}

const hopEHLO = "250-mx.far.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"

// hopDefault answers like a plain next hop without STARTTLS that takes
// everything.
func hopDefault(line string) string {
	cmd := strings.ToUpper(line)
	switch {
	case line == "":
		return "220 mx.far.test fake ESMTP\r\n"
	case strings.HasPrefix(cmd, "EHLO"):
		return hopEHLO
	case strings.HasPrefix(cmd, "HELO"):
		return "250 mx.far.test\r\n"
	case strings.HasPrefix(cmd, "MAIL FROM:"):
		return "250 2.1.0 OK\r\n"
	case strings.HasPrefix(cmd, "RCPT TO:"):
		return "250 2.1.5 OK\r\n"
	case cmd == "DATA":
		return "354 go ahead\r\n"
	case line == ".":
		return "250 2.0.0 queued\r\n"
	case cmd == "RSET", cmd == "NOOP":
		return "250 2.0.0 OK\r\n"
	case cmd == "QUIT":
		return "221 2.0.0 bye\r\n"
	}
	return "500 5.5.2 unknown command\r\n"
}

// relayVia prepares (but does not start) a Mailroom whose mail to far.test
// goes to hop at ip, with retries after 1s and extraQueue added to [queue].
func relayVia(t *testing.T, ip string, hop *fakeHop, extraSMTP, extraQueue string) *server {
	t.Helper()
	dnsAddr := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {ip}}).Addr
	return newServer(t, extraSMTP, fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n%s",
		dnsAddr, hop.port, extraQueue))
}

// queueRow is a row of "queue list --json".
type queueRow struct {
	QueueID   string `json:"queue_id"`
	From      string `json:"from"`
	To        string `json:"to"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	Active    bool   `json:"active"`
}

func (s *server) queue() []queueRow {
	s.t.Helper()
	var rows []queueRow
	if err := json.Unmarshal([]byte(s.cli("queue", "list", "--json")), &rows); err != nil {
		s.t.Fatal(err)
	}
	return rows
}

// logLines returns the lines of the server's log that contain all of want.
func (s *server) logLines(want ...string) []string {
	var out []string
	for _, l := range strings.Split(s.logs(), "\n") {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// waitFor polls cond for up to 20 seconds.
func waitFor(t *testing.T, s *server, h *fakeHop, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s\nthe hop saw:\n%s\nserver log:\n%s", what, h.dump(), s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submit sends one message from alice through submission.
func submit(t *testing.T, s *server, to []string, body string) {
	t.Helper()
	c := loggedIn(t, s)
	if r := c.sendMail("alice@example.test", to, body); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q\n%s", r, s.logs())
	}
	c.cmd("QUIT", "221 ")
}

// submitSubject submits a short message from alice with a subject.
func submitSubject(t *testing.T, s *server, to, subject string) {
	t.Helper()
	submit(t, s, []string{to}, "From: alice@example.test\r\nSubject: "+subject+"\r\n\r\nx\r\n")
}

// TestRelayFaultTemporaryThenAccepted: a next hop that answers 451 to the
// first transaction gets the message again at the next attempt and takes
// it; the sender hears nothing.
func TestRelayFaultTemporaryThenAccepted(t *testing.T) {
	for _, tc := range []struct {
		name, ip, at string // at: the command the first attempt's 451 answers
	}{
		{"a 451 to RCPT defers the message, and the retry delivers it", "127.0.0.81", "RCPT TO:"},
		{"a 451 after the data defers the message, and the retry delivers it", "127.0.0.82", "."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The second transaction (on a new connection, or on the first
			// one kept open) waits for the gate, so that the queue can be
			// looked at between the attempts.
			gate := make(chan struct{})
			opened := false
			open := func() {
				if !opened {
					opened = true
					close(gate)
				}
			}
			defer open()
			var mu sync.Mutex
			mails := 0
			hop := startHop(t, tc.ip, func(n int, line string) string {
				mu.Lock()
				if strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:") {
					mails++
				}
				tx := mails
				mu.Unlock()
				if tx == 1 && strings.HasPrefix(strings.ToUpper(line), tc.at) {
					return "451 4.3.0 try again later\r\n"
				}
				if tx == 2 && strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:") {
					select {
					case <-gate:
					case <-time.After(25 * time.Second):
					}
				}
				return hopDefault(line)
			})
			a := relayVia(t, tc.ip, hop, "", "")
			a.start()
			submit(t, a, []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: second time lucky\r\n\r\nhello carol\r\n")

			a.waitLog("state=deferred")
			rows := a.queue()
			if len(rows) != 1 || rows[0].To != "carol@far.test" || rows[0].State != "deferred" || rows[0].Attempts != 1 ||
				!strings.Contains(rows[0].LastError, "451 4.3.0 try again later") {
				t.Fatalf("queue list after the first attempt: %+v\n%s", rows, a.logs())
			}
			open()
			waitFor(t, a, hop, "delivery at the second attempt", func() bool { return len(a.logLines("state=delivered")) > 0 })
			if got := a.logLines("state=delivered", "to=carol@far.test", "attempt=2"); len(got) != 1 {
				t.Errorf("no delivery logged at attempt 2:\n%s", a.logs())
			}
			if rows := a.queue(); len(rows) != 0 {
				t.Errorf("queue list after delivery: %+v", rows)
			}
			var got []string
			for _, s := range hop.seen() {
				got = append(got, s.messages...)
			}
			// The data went once per DATA: at the second attempt only, or
			// (451 after the data) at both.
			want := map[string]int{"RCPT TO:": 1, ".": 2}[tc.at]
			if len(got) != want || !strings.Contains(got[len(got)-1], "hello carol") {
				t.Errorf("the hop got %d messages, want %d:\n%s", len(got), want, hop.dump())
			}
			if n := len(a.mailbox("alice@example.test")); n != 0 || len(a.logLines("delivery report sent")) != 0 {
				t.Errorf("alice got %d reports for a delivered message:\n%s", n, a.logs())
			}
		})
	}
}

// TestRelayFaultOneRecipientRefused: of three recipients at one domain, the
// next hop refuses one for good at RCPT: the two others go in the same
// transaction, and the sender gets one report about the refused one only.
func TestRelayFaultOneRecipientRefused(t *testing.T) {
	hop := startHop(t, "127.0.0.83", func(n int, line string) string {
		if strings.EqualFold(line, "RCPT TO:<x2@far.test>") {
			return "550 5.1.1 <x2@far.test>: no such user here\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.83", hop, "", "")
	a.start()
	submit(t, a, []string{"x1@far.test", "x2@far.test", "x3@far.test"}, "From: alice@example.test\r\nSubject: three of us\r\n\r\nhello all\r\n")

	waitFor(t, a, hop, "the report", func() bool { return len(a.logLines("delivery report sent")) > 0 })
	if n := len(a.logLines("state=delivered")); n != 2 {
		t.Errorf("%d recipients logged delivered, want 2:\n%s", n, a.logs())
	}
	seen := hop.seen()
	if len(seen) != 1 || hop.count("MAIL FROM:") != 1 || hop.count("RCPT TO:") != 3 || hop.count("DATA") != 1 ||
		len(seen[0].messages) != 1 || !strings.Contains(seen[0].messages[0], "hello all") {
		t.Errorf("not one transaction with one message:\n%s", hop.dump())
	}
	msgs := a.mailbox("alice@example.test")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want one report:\n%s", len(msgs), a.logs())
	}
	report := a.message("alice@example.test", msgs[0].ID)
	for _, want := range []string{"Return-Path: <>", "multipart/report", "Final-Recipient: rfc822; x2@far.test", "Action: failed",
		"Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 <x2@far.test>: no such user here", "Remote-MTA: dns; mx.far.test",
		"Subject: three of us"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if n := strings.Count(report, "Final-Recipient:"); n != 1 || strings.Contains(report, "x1@far.test") || strings.Contains(report, "x3@far.test") {
		t.Errorf("the report names other recipients:\n%s", report)
	}
	if rows := a.queue(); len(rows) != 0 {
		t.Errorf("queue list: %+v", rows)
	}
}

// TestRelayFaultExpiry: a next hop that never takes the message (421 at
// the greeting, 451 to MAIL) keeps it deferred until [queue] expire; then
// the recipient fails and the sender gets one report. expire cannot be
// under a minute (config validation), so instead of waiting the test ages
// the entry in the store while the server is down.
func TestRelayFaultExpiry(t *testing.T) {
	embeddedOnly(t, "it ages a queue entry in the embedded store's database")
	hop := startHop(t, "127.0.0.84", func(n int, line string) string {
		switch {
		case n%2 == 1 && line == "":
			return "421 4.3.2 mx.far.test is busy, come back later\r\n"
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"):
			return "451 4.3.0 not now\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.84", hop, "", "expire = \"1m\"\ndelay_warning = \"0s\"\n")
	a.start()
	submit(t, a, []string{"late@far.test"}, "From: alice@example.test\r\nSubject: never there\r\n\r\nhello?\r\n")

	a.waitLog("state=deferred")
	a.stop() // at once, before the retry a second later
	if rows := a.queue(); len(rows) != 1 || rows[0].State != "deferred" || !strings.Contains(rows[0].LastError, "421 4.3.2") {
		t.Fatalf("queue list after the first attempt: %+v\n%s", rows, a.logs())
	}
	age(t, a, 2*time.Minute)
	a.start()

	waitFor(t, a, hop, "the report", func() bool { return len(a.logLines("delivery report sent")) > 0 })
	if got := a.logLines("state=failed", "to=late@far.test", "4.4.7 expired after 1m0s in the queue; last error: 4"); len(got) != 1 {
		t.Errorf("the expiry is not logged once:\n%s", a.logs())
	}
	if n := len(hop.seen()); n != 2 || hop.count("MAIL FROM:") != 1 || hop.count("DATA") != 0 {
		t.Errorf("want two attempts (one refused at the greeting, one at MAIL) and no data:\n%s", hop.dump())
	}
	msgs := a.mailbox("alice@example.test")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want one report:\n%s", len(msgs), a.logs())
	}
	report := strings.ReplaceAll(a.message("alice@example.test", msgs[0].ID), "\r\n ", " ") // unfolded
	// The queue writes "4.4.7 expired ..."; the report's Status is class 5
	// because the action is "failed" (internal/dsn).
	for _, want := range []string{"Final-Recipient: rfc822; late@far.test", "Action: failed", "Status: 5.4.7",
		"Remote-MTA: dns; mx.far.test", "Diagnostic-Code: X-Mailroom; 4.4.7 expired after 1m0s in the queue; last error: 451 4.3.0 not now",
		"Subject: never there"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "Action: delayed") {
		t.Errorf("a delay warning with delay_warning off:\n%s", report)
	}
	if rows := a.queue(); len(rows) != 0 {
		t.Errorf("queue list after expiry: %+v", rows)
	}
}

// age moves the creation time of every queue entry of a stopped server d
// into the past.
func age(t *testing.T, s *server, d time.Duration) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(s.dir, "data", "mailroom.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE queue SET created = created - ?", d.Nanoseconds()); err != nil {
		t.Fatal(err)
	}
}

// TestRelayFaultNoBounceOfABounce: a report Mailroom sends (from the null
// sender) that is refused for good is dropped, not reported in turn; so is
// any other message from the null sender.
func TestRelayFaultNoBounceOfABounce(t *testing.T) {
	hop := startHop(t, "127.0.0.85", func(n int, line string) string {
		if strings.HasPrefix(strings.ToUpper(line), "RCPT TO:") {
			return "550 5.1.1 no such user here\r\n"
		}
		return hopDefault(line)
	})
	// A trusted client relays mail of a far.test sender to far.test.
	a := relayVia(t, "127.0.0.85", hop, "trusted_networks = [\"127.0.0.1/32\"]", "")
	a.start()
	c := a.dial()
	c.cmd("EHLO trusted.example", "250 ")
	if r := c.sendMail("sender@far.test", []string{"gone@far.test"}, "From: sender@far.test\r\nSubject: to nobody\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("MX: %q", r)
	}

	t.Run("the report of a failure, itself refused, is dropped", func(t *testing.T) {
		// Attempt 1 refuses gone@: a report from <> goes to sender@far.test,
		// which the hop refuses too.
		waitFor(t, a, hop, "the report's failure", func() bool { return len(a.logLines("no bounce for a message from the null sender")) == 1 })
		if got := a.logLines("delivery report sent", "to=sender@far.test"); len(got) != 1 {
			t.Errorf("the first failure was not reported once:\n%s", a.logs())
		}
		if got := a.logLines("state=failed", "to=sender@far.test"); len(got) != 1 {
			t.Errorf("the report's failure is not logged:\n%s", a.logs())
		}
	})

	c.cmd("RSET", "250 ")
	if r := c.sendMail("", []string{"gone2@far.test"}, "From: someone@far.test\r\nSubject: from the null sender\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("MX: %q", r)
	}
	t.Run("a message from the null sender refused for good is dropped", func(t *testing.T) {
		waitFor(t, a, hop, "the failure", func() bool { return len(a.logLines("no bounce for a message from the null sender")) == 2 })
	})

	// Nothing more: wait past a retry interval and look everywhere.
	time.Sleep(1500 * time.Millisecond)
	if got := hop.count("MAIL FROM:"); got != 3 || hop.count("MAIL FROM:<>") != 2 || hop.count("DATA") != 0 {
		t.Errorf("want three transactions, two from <>, none with data:\n%s", hop.dump())
	}
	if n := len(a.logLines("delivery report sent")); n != 1 {
		t.Errorf("%d reports sent, want 1:\n%s", n, a.logs())
	}
	if rows := a.queue(); len(rows) != 0 {
		t.Errorf("queue list: %+v", rows)
	}
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if n := len(a.mailbox(u)); n != 0 {
			t.Errorf("%s has %d messages", u, n)
		}
	}
}

// hopTLSEHLO offers STARTTLS (which the hop cannot really do).
const hopTLSEHLO = "250-mx.far.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n"

// TestRelayFaultInjectedReplies: a next hop (or a man in the middle) that
// sends replies nobody asked for around STARTTLS must not get the
// message in plaintext; smtpclient "does not believe replies a server
// sends ahead of the TLS handshake".
func TestRelayFaultInjectedReplies(t *testing.T) {
	for _, tc := range []struct {
		name, ip string
		script   func(line string) string
		errText  string // in the deferred entry's last error
	}{
		{name: "a reply pipelined after the 220 to STARTTLS abandons the connection", ip: "127.0.0.86",
			script: func(line string) string {
				switch strings.ToUpper(line) {
				case "STARTTLS":
					return "220 2.0.0 go ahead\r\n250 injected\r\n"
				}
				if strings.HasPrefix(strings.ToUpper(line), "EHLO") {
					return hopTLSEHLO
				}
				return hopDefault(line)
			},
			errText: "4.4.1 smtp starttls: the server sent data ahead of the TLS handshake (reply injection)"},
		{name: "a reply appended to the EHLO reply is not taken for the answer to STARTTLS", ip: "127.0.0.87",
			script: func(line string) string {
				switch {
				case strings.HasPrefix(strings.ToUpper(line), "EHLO"):
					return hopTLSEHLO + "250 extra\r\n"
				case strings.ToUpper(line) == "STARTTLS":
					return "220 2.0.0 go ahead\r\n"
				}
				return hopDefault(line)
			},
			errText: "smtp ehlo: the server sent more than one reply"},
		{name: "a reply appended to the greeting is not taken for the answer to EHLO", ip: "127.0.0.88",
			script: func(line string) string {
				switch {
				case line == "":
					return "220 mx.far.test fake ESMTP\r\n250 extra\r\n"
				case strings.HasPrefix(strings.ToUpper(line), "EHLO"):
					return hopTLSEHLO
				}
				return hopDefault(line)
			},
			errText: "smtp greeting: the server sent more than one reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hop := startHop(t, tc.ip, func(n int, line string) string { return tc.script(line) })
			a := relayVia(t, tc.ip, hop, "", "")
			a.start()
			submit(t, a, []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: secret\r\n\r\nfor your eyes only\r\n")

			// Two attempts, so that the outcome is not a one-off.
			waitFor(t, a, hop, "two attempts or an end", func() bool {
				return len(a.logLines("state=deferred")) >= 2 || len(a.logLines("state=delivered"))+len(a.logLines("state=failed")) > 0
			})
			for _, s := range hop.seen() {
				for i, l := range s.lines {
					if strings.EqualFold(l, "STARTTLS") && i != len(s.lines)-1 {
						t.Errorf("the client went on after STARTTLS: %q", s.lines)
					}
				}
			}
			if hop.count("MAIL FROM:") != 0 || hop.count("RCPT TO:") != 0 || hop.count("DATA") != 0 {
				t.Errorf("the envelope went out in plaintext:\n%s", hop.dump())
			}
			if n := len(a.logLines("state=")); n != len(a.logLines("state=deferred")) {
				t.Errorf("an attempt did not end deferred:\n%s", a.logs())
			}
			rows := a.queue()
			if len(rows) != 1 || rows[0].State != "deferred" || !strings.Contains(rows[0].LastError, tc.errText) {
				t.Errorf("queue list: %+v, want deferred with %q", rows, tc.errText)
			}
			if n := len(a.mailbox("alice@example.test")); n != 0 {
				t.Errorf("alice got %d reports", n)
			}
		})
	}
}

// TestRelayFaultDataNotAnswered354: a next hop that answers DATA with a
// 250 instead of 354 has not received the message, which must not count
// as delivered (RFC 5321 4.3.2: DATA's only positive reply is 354).
func TestRelayFaultDataNotAnswered354(t *testing.T) {
	hop := startHop(t, "127.0.0.89", func(n int, line string) string {
		if strings.EqualFold(line, "DATA") {
			return "250 2.0.0 OK\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.89", hop, "", "")
	a.start()
	submit(t, a, []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: into the void\r\n\r\nhello\r\n")
	waitFor(t, a, hop, "an attempt", func() bool { return len(a.logLines("state=")) > 0 })
	if got := a.logLines("state=delivered"); len(got) != 0 {
		t.Errorf("logged delivered, but the hop received no message:\n%s\n%s", hop.dump(), a.logs())
	}
}

// TestRelayHostileNextHop: next hops that send an endless line, endless
// continuation lines, or drip their greeting get the message deferred with
// a clear reason, in bounded memory: nothing they send is kept beyond the
// reply bounds.
func TestRelayHostileNextHop(t *testing.T) {
	chunk := []byte(strings.Repeat("x", 64<<10))
	hops := map[string]func(net.Conn){
		"endless.test": func(c net.Conn) { // up to 2 GiB on one line
			c.Write([]byte("220 "))
			for i := 0; i < 32<<10; i++ {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		},
		"lines.test": func(c net.Conn) {
			line := []byte("220-" + strings.Repeat("y", 1000) + "\r\n")
			for i := 0; i < 1<<21; i++ {
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		},
		"drip.test": func(c net.Conn) {
			for i := 0; i < 3000; i++ {
				if _, err := c.Write([]byte("2")); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
	}
	// One port for all: each hop has its own address, the server one port.
	port := 0
	records := map[string][]string{}
	for i, domain := range []string{"endless.test", "lines.test", "drip.test"} {
		ip := fmt.Sprintf("127.0.0.%d", 101+i)
		p := 0
		for tries := 0; p == 0 || port != 0 && p != port; tries++ {
			if tries > 20 {
				t.Skip("could not get one free port on three addresses")
			}
			p = rawHopAt(t, ip, port, hops[domain])
		}
		port = p
		records[domain+". MX"] = []string{"10 mx." + domain + "."}
		records["mx."+domain+". A"] = []string{ip}
	}
	dnsAddr := dnstest.Start(t, records).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1h\"]\n", dnsAddr, port))
	a.start()
	submit(t, a, []string{"a@endless.test", "b@lines.test", "c@drip.test"}, "From: alice@example.test\r\nSubject: hostile\r\n\r\nx\r\n")
	deadline := time.Now().Add(40 * time.Second)
	for _, want := range []string{"longer than 4096 octets", "more than 200 lines", "came too slowly"} {
		for len(a.logLines("state=deferred", want)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no deferral saying %q:\n%s", want, a.logs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	for _, l := range strings.Split(string(status), "\n") {
		if kb, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var n int
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), &n)
			if n > 200<<10 {
				t.Errorf("the server's peak memory reached %d MB while hostile next hops talked to it", n>>10)
			}
		}
	}
}

// rawHopAt is rawHop on a given port (0: any); it returns 0 when the port
// is taken on ip.
func rawHopAt(t *testing.T, ip string, port int, serve func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		return 0
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRelayFaultBrokenTLSFallsBackToPlaintext: an MX that offers STARTTLS
// and then breaks the handshake gets the message in plaintext on a second
// connection (opportunistic TLS, RFC 7435), and the delivery says so.
func TestRelayFaultBrokenTLSFallsBackToPlaintext(t *testing.T) {
	hop := startHop(t, "127.0.0.97", func(n int, line string) string {
		switch cmd := strings.ToUpper(line); {
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-mx.far.test\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n"
		case cmd == "STARTTLS":
			return "220 2.0.0 Go ahead\r\n"
		case strings.HasPrefix(line, "\x16"): // a TLS ClientHello where a command should be
			return "500 5.5.1 What was that?\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.97", hop, "", "")
	a.start()
	submit(t, a, []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: plain\r\n\r\nplain\r\n")
	waitFor(t, a, hop, "the message in plaintext", func() bool { return len(hop.messagesWith("Subject: plain")) == 1 })
	a.waitLog("state=delivered")
	if lines := a.logLines("state=delivered", "STARTTLS failed"); len(lines) != 1 {
		t.Errorf("the delivery does not record the failed STARTTLS:\n%s", a.logs())
	}
}

// TestRelayFaultLongReplyBounceFolded: a next hop's long multiline 550
// comes back in a report whose every line is at most 998 octets (RFC 5322
// 2.1.1), the Diagnostic-Code folded, and Python's email package reads it.
func TestRelayFaultLongReplyBounceFolded(t *testing.T) {
	var long strings.Builder
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&long, "550-5.1.1 line %02d of a very long explanation why this mailbox does not exist here at all\r\n", i)
	}
	long.WriteString("550 5.1.1 the end\r\n")
	hop := startHop(t, "127.0.0.98", func(n int, line string) string {
		if strings.HasPrefix(strings.ToUpper(line), "RCPT TO:") {
			return long.String()
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.98", hop, "", "")
	a.start()
	submit(t, a, []string{"gone@far.test"}, "From: alice@example.test\r\nSubject: to nobody\r\n\r\nx\r\n")
	waitMailbox(t, a, "alice@example.test", 1, "the bounce")
	report := a.message("alice@example.test", a.mailbox("alice@example.test")[0].ID)
	for i, l := range strings.Split(report, "\r\n") {
		if len(l) > 998 {
			t.Errorf("line %d of the report has %d octets", i+1, len(l))
		}
	}
	py := requireTool(t, "python3")
	cmd := exec.Command(py, "-c", `import email, sys
m = email.message_from_bytes(sys.stdin.buffer.read())
ds = [p for p in m.walk() if p.get_content_type() == "message/delivery-status"][0]
rcpt = ds.get_payload()[1]
print(rcpt["Action"], " ".join(rcpt["Diagnostic-Code"].split()))`)
	cmd.Stdin = strings.NewReader(report)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "failed smtp; 550") || !strings.Contains(string(out), "line 29 of a very long explanation") {
		t.Errorf("Python's email package reads the report as %v %q", err, out)
	}
}

// TestRelayFaultDelayReturnsHeadersOnly: a delay warning returns the
// message's header only, even under RET=FULL, which asks for the whole
// message back with a failure (RFC 3461 4.3).
func TestRelayFaultDelayReturnsHeadersOnly(t *testing.T) {
	hop := startHop(t, "127.0.0.99", func(n int, line string) string {
		if strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:") {
			return "451 4.3.0 not now\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.99", hop, "", "delay_warning = \"1s\"\n")
	a.start()
	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> RET=FULL", "250 ")
	c.cmd("RCPT TO:<slow@far.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: slow going\r\n\r\nthe body stays home\r\n")
	waitMailbox(t, a, "alice@example.test", 1, "the delay warning")
	report := a.message("alice@example.test", a.mailbox("alice@example.test")[0].ID)
	if !strings.Contains(report, "Action: delayed") || !strings.Contains(report, "text/rfc822-headers") || strings.Contains(report, "the body stays home") {
		t.Errorf("the delay warning under RET=FULL is not a headers-only report:\n%s", report)
	}
}

// TestReportsCannotBeAimed: a forged MAIL FROM on port 25 gets no success
// report (backscatter); a bounce returns at most report_size_limit of the
// original (the header only beyond it, a huge header cut); and no more
// than max_reports_per_hour reports go to one other domain (our own users'
// reports are not limited).
func TestReportsCannotBeAimed(t *testing.T) {
	hop := startHop(t, "127.0.0.100", func(n int, line string) string {
		if strings.HasPrefix(strings.ToUpper(line), "RCPT TO:") {
			return "550 5.1.1 no such user\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.100", hop, "trusted_networks = [\"127.0.0.7\"]", "report_size_limit = \"10KiB\"\nmax_reports_per_hour = 2\n")
	a.start()
	// Port 25, not logged in, MAIL FROM forged as bob: no report to bob.
	c := a.dial()
	c.cmd("EHLO forger.example", "250 ")
	c.cmd("MAIL FROM:<bob@example.test> RET=FULL", "250 ")
	c.cmd("RCPT TO:<alice@example.test> NOTIFY=SUCCESS", "250 ")
	c.data("Subject: aimed\r\n\r\nx\r\n")

	// Three bounces to alice (ours: not limited): a big message comes back
	// as its header only, a huge header cut at the limit.
	s := loggedIn(t, a)
	s.cmd("MAIL FROM:<alice@example.test> RET=FULL", "250 ")
	s.cmd("RCPT TO:<gone1@far.test>", "250 ")
	s.data("From: alice@example.test\r\nSubject: big body\r\n\r\n" + strings.Repeat("body line\r\n", 5000))
	s.cmd("MAIL FROM:<alice@example.test>", "250 ")
	s.cmd("RCPT TO:<gone2@far.test>", "250 ")
	s.data("From: alice@example.test\r\nSubject: big header\r\n" + strings.Repeat("X-Padding: "+strings.Repeat("p", 60)+"\r\n", 3000) + "\r\nx\r\n")
	s.cmd("MAIL FROM:<alice@example.test>", "250 ")
	s.cmd("RCPT TO:<gone3@far.test>", "250 ")
	s.data("From: alice@example.test\r\nSubject: third\r\n\r\nx\r\n")
	waitMailbox(t, a, "alice@example.test", 4, "the aimed message and three bounces")

	// Three bounces to another domain's sender (relayed for a trusted
	// client): the third is over the hourly limit.
	tr := a.dialFrom(t, a.addr, "127.0.0.7")
	tr.expect("220 ")
	tr.cmd("EHLO app.example", "250 ")
	for i := 4; i <= 6; i++ {
		tr.cmd("MAIL FROM:<sender@far.test>", "250 ")
		tr.cmd(fmt.Sprintf("RCPT TO:<gone%d@far.test>", i), "250 ")
		tr.data("From: sender@far.test\r\nSubject: relayed\r\n\r\nx\r\n")
	}
	a.waitLog("more than 2 reports an hour to far.test")
	if n := len(a.mailbox("bob@example.test")); n != 0 {
		t.Errorf("bob got %d reports for a message he never sent", n)
	}
	var bounces []string
	for _, m := range a.mailbox("alice@example.test") {
		if raw := a.message("alice@example.test", m.ID); strings.Contains(raw, "multipart/report") {
			bounces = append(bounces, raw)
			if len(raw) > 20<<10 {
				t.Errorf("a report of %d octets, over report_size_limit (10 KiB) and its own text", len(raw))
			}
		}
	}
	if len(bounces) != 3 {
		t.Fatalf("alice has %d reports, want 3 (reports to our own users are not limited)", len(bounces))
	}
	for _, b := range bounces {
		if strings.Contains(b, "big body") && (strings.Contains(b, "body line") || !strings.Contains(b, "text/rfc822-headers")) {
			t.Errorf("a message over the limit came back whole:\n%.600s", b)
		}
	}
}

// TestRelayFaultEightBitBounce: the report on an 8-bit message labels the
// returned part 8bit (RFC 2045 6.1) and goes to an 8BITMIME next hop with
// BODY=8BITMIME (RFC 6152 3); Python's email package reads it.
func TestRelayFaultEightBitBounce(t *testing.T) {
	hop := startHop(t, "127.0.0.101", func(n int, line string) string {
		switch cmd := strings.ToUpper(line); {
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-mx.far.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
		case strings.HasPrefix(cmd, "RCPT TO:<GONE@"):
			return "550 5.1.1 no such user\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.101", hop, "trusted_networks = [\"127.0.0.0/8\"]", "")
	a.start()
	c := a.dial()
	c.cmd("EHLO app.example", "250 ")
	c.cmd("MAIL FROM:<sender@far.test> BODY=8BITMIME RET=FULL", "250 ")
	c.cmd("RCPT TO:<gone@far.test>", "250 ")
	c.data("From: sender@far.test\r\nSubject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n")
	waitFor(t, a, hop, "the report at the hop", func() bool { return len(hop.messagesWith("multipart/report")) == 1 })
	if hop.count("MAIL FROM:<> BODY=8BITMIME") != 1 {
		t.Errorf("the 8-bit report did not go with BODY=8BITMIME:\n%s", hop.dump())
	}
	report := hop.messagesWith("multipart/report")[0]
	py := requireTool(t, "python3")
	cmd := exec.Command(py, "-c", `import email, sys
m = email.message_from_bytes(sys.stdin.buffer.read())
part = [p for p in m.walk() if p.get_content_type() == "message/rfc822"][0]
print(part["Content-Transfer-Encoding"], part.get_payload()[0].get_payload(decode=True).decode("utf-8").strip())`)
	cmd.Stdin = strings.NewReader(report)
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "8bit Grüße aus Köln" {
		t.Errorf("Python reads the returned part as %v %q", err, out)
	}
}

// TestReportsReadByBounceDetectors: failure, delay, success, 8-bit and
// SMTPUTF8 reports are read by Python's email package and by Mailman's
// bounce detector (flufl.bounce): failures found as permanent, delays as
// temporary, successes as neither; the report on a UTF-8 recipient is an
// internationalized one (RFC 6533), which flufl.bounce passes over without
// crashing; no line over 998 octets.
func TestReportsReadByBounceDetectors(t *testing.T) {
	hop := startHop(t, "127.0.0.102", func(n int, line string) string {
		switch cmd := strings.ToUpper(line); {
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-mx.far.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
		case strings.HasPrefix(cmd, "RCPT TO:<GONE"):
			return "550 5.1.1 no such user\r\n"
		case strings.HasPrefix(cmd, "RCPT TO:<SLOW"):
			return "451 4.3.0 try later\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.102", hop, "", "delay_warning = \"1s\"\n")
	a.start()
	c := loggedIn(t, a)
	send := func(mail, rcpt, body string) {
		addr, params, _ := strings.Cut(rcpt, " ")
		if params != "" {
			params = " " + params
		}
		c.cmd("MAIL FROM:<alice@example.test>"+mail, "250 ")
		c.cmd("RCPT TO:<"+addr+">"+params, "250 ")
		c.data("From: alice@example.test\r\n" + body)
	}
	send("", "gone1@far.test", "Subject: failure\r\n\r\nx\r\n")
	send("", "slow@far.test", "Subject: delay\r\n\r\nx\r\n")
	send("", "bob@example.test NOTIFY=SUCCESS", "Subject: success\r\n\r\nx\r\n")
	send(" BODY=8BITMIME", "gone2@far.test", "Subject: eight bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n")
	send(" SMTPUTF8 BODY=8BITMIME", "rejectü@far.test", "Subject: utf8\r\n\r\nx\r\n")
	waitMailbox(t, a, "alice@example.test", 5, "five reports")
	py := requireTool(t, "/usr/bin/python3")
	want := map[string]string{ // report subject line in the returned header -> what flufl.bounce must find
		"Subject: failure": "permanent gone1@far.test", "Subject: delay": "temporary slow@far.test",
		"Subject: success": "none", "Subject: eight bit": "permanent gone2@far.test",
		// flufl.bounce 4.0 reads no RFC 6533 report; it must not crash on one
		// (it did on "rfc822; rejectü@..." in a message/delivery-status).
		"Subject: utf8": "none",
	}
	for _, m := range a.mailbox("alice@example.test") {
		raw := a.message("alice@example.test", m.ID)
		for i, l := range strings.Split(raw, "\r\n") {
			if len(l) > 998 {
				t.Errorf("report %q line %d has %d octets", m.Subject, i+1, len(l))
			}
		}
		cmd := exec.Command(py, "-c", `import email, sys
from flufl.bounce import all_failures
m = email.message_from_bytes(sys.stdin.buffer.read())
temp, perm = all_failures(m)
addrs = lambda s: " ".join(sorted(a.decode() if isinstance(a, bytes) else a for a in s))
print("permanent " + addrs(perm) if perm else "temporary " + addrs(temp) if temp else "none")`)
		cmd.Stdin = strings.NewReader(raw)
		out, err := cmd.CombinedOutput()
		found := ""
		for k, v := range want {
			if strings.Contains(raw, k+"\r\n") {
				found = v
			}
		}
		if err != nil || strings.TrimSpace(string(out)) != found {
			t.Errorf("flufl.bounce reads report %q as %v %q, want %q", m.Subject, err, out, found)
		}
		if strings.Contains(raw, "rejectü") && (!strings.Contains(raw, "message/global-delivery-status") || !strings.Contains(raw, "Final-Recipient: utf-8; rejectü@far.test")) {
			t.Errorf("the report on a UTF-8 recipient is not internationalized (RFC 6533):\n%s", raw)
		}
	}
}

// TestSMTPUTF8OnlyWhenNeeded: mail submitted with SMTPUTF8 (as Go's
// net/smtp and other clients give it whenever offered) that holds no UTF-8
// in its envelope or header goes to a next hop without SMTPUTF8; with a
// UTF-8 Subject it still cannot, and bounces with 5.6.7.
func TestSMTPUTF8OnlyWhenNeeded(t *testing.T) {
	hop := startHop(t, "127.0.0.104", func(n int, line string) string {
		if strings.HasPrefix(strings.ToUpper(line), "EHLO") {
			return "250-mx.far.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.104", hop, "", "")
	a.start()
	if err := sendVia(a.subAddr, "alice@example.test", "secret-alice", "ascii@far.test", "From: alice@example.test\r\nSubject: plain\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> SMTPUTF8", "250 ")
	c.cmd("RCPT TO:<utf8@far.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: Grüße\r\n\r\nx\r\n")
	waitFor(t, a, hop, "the ASCII message delivered", func() bool { return len(hop.messagesWith("Subject: plain")) == 1 })
	waitMailbox(t, a, "alice@example.test", 1, "the report on the UTF-8 one")
	if n := hop.count("MAIL FROM:<alice@example.test> SMTPUTF8"); n != 0 {
		t.Errorf("SMTPUTF8 given %d times to a hop that does not offer it", n)
	}
	if len(hop.messagesWith("Grüße")) != 0 {
		t.Error("the message with a UTF-8 Subject went to a hop without SMTPUTF8")
	}
	if raw := a.message("alice@example.test", a.mailbox("alice@example.test")[0].ID); !strings.Contains(raw, "5.6.7") {
		t.Errorf("the report does not say 5.6.7:\n%s", raw)
	}
}
