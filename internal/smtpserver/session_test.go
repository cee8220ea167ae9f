package smtpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"mailroom/internal/auth"
	"mailroom/internal/authlimit"
	"mailroom/internal/listener"
	"mailroom/internal/smtp"
	"mailroom/internal/spool"
	"mailroom/internal/store"
)

// fakeBackend accepts recipients in example.test and records messages.
type fakeBackend struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (b *fakeBackend) Mail(context.Context, *SessionInfo, smtp.Address, smtp.MailParams) error {
	return nil
}

func (b *fakeBackend) Rcpt(_ context.Context, _ *SessionInfo, _ *Transaction, to smtp.Address, _ smtp.RcptParams) (any, error) {
	if to.Domain != "example.test" {
		return nil, smtp.Errorf(554, "5.7.1", "Relay access denied")
	}
	return nil, nil
}

// fakeCreds knows alice@example.test with the password "pw", hashed with
// cheap argon2id parameters so that fuzzing stays fast.
type fakeCreds struct{}

var cheapHash = func() string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 8, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=8,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}()

func (fakeCreds) User(_ context.Context, addr string) (store.User, error) {
	if addr == "alice@example.test" {
		return store.User{Address: addr, PasswordHash: cheapHash}, nil
	}
	return store.User{}, store.ErrNotFound
}

func (fakeCreds) UserByAppPassword(context.Context, string) (store.User, string, error) {
	return store.User{}, "", store.ErrNotFound
}

func (b *fakeBackend) Deliver(_ context.Context, _ *SessionInfo, _ *Transaction, msg *spool.Spool) error {
	data, _ := io.ReadAll(msg.Reader())
	b.mu.Lock()
	b.msgs = append(b.msgs, data)
	b.mu.Unlock()
	return nil
}

func testConfig() *Config {
	return &Config{Hostname: "mx.example.test", MaxMessageSize: 4096, MaxRecipients: 2, MaxLineLength: 512,
		MaxErrors: 5, CommandTimeout: 2 * time.Second,
		DataTimeout: 2 * time.Second}
}

// pipeConn is an in-memory connection that, unlike net.Pipe, lets the
// client close its sending side alone. Deadlines are not supported: the
// client's input always ends, so a session cannot hang on it.
type pipeConn struct {
	io.Reader
	io.WriteCloser
}

func (pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 25} }
func (pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 1234} }
func (pipeConn) SetDeadline(time.Time) error      { return nil }
func (pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (pipeConn) SetWriteDeadline(time.Time) error { return nil }

// runSession feeds input to one session and returns everything the server
// wrote.
func runSession(t testing.TB, cfg *Config, b Backend, input string) string {
	return runSessionMode(t, cfg, b, ModeMX, input)
}

// runSessionMode is runSession on a listener of the given mode.
func runSessionMode(t testing.TB, cfg *Config, b Backend, mode Mode, input string) string {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(cfg, b, auth.New(fakeCreds{}, authlimit.Policy{}, nil, log), log)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	server := pipeConn{Reader: inR, WriteCloser: outW}
	sess := newSession(srv, cfg, listener.NewConn(server, time.Second))
	sess.info.Mode = mode
	done := make(chan struct{})
	go func() { sess.serve(); outW.Close(); inR.Close(); close(done) }()
	var out bytes.Buffer
	readDone := make(chan struct{})
	go func() { io.Copy(&out, outR); close(readDone) }()
	go func() { inW.Write([]byte(input)); inW.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("session did not end for input %q", input)
	}
	<-readDone
	return out.String()
}

// TestSessionStateMachine: the reply codes of each command in each state.
func TestSessionStateMachine(t *testing.T) {
	const hello = "EHLO c.example\r\n"
	const tx = hello + "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n"
	cases := []struct {
		name  string
		input string
		want  []string // reply codes after the greeting, in order
	}{
		{"a full transaction is accepted", tx + "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", []string{"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"}},
		{"MAIL needs a greeting", "MAIL FROM:<a@b.example>\r\n", []string{"503 5.5.1"}},
		{"RCPT needs MAIL", hello + "RCPT TO:<u@example.test>\r\n", []string{"250", "503 5.5.1"}},
		{"RSET forgets the transaction", tx + "RSET\r\nDATA\r\n", []string{"250", "250", "250", "250 2.0.0", "503 5.5.1"}},
		{"EHLO resets the transaction", tx + hello + "RCPT TO:<u@example.test>\r\n", []string{"250", "250", "250", "250", "503 5.5.1"}},
		{"relay is refused by the backend", hello + "MAIL FROM:<>\r\nRCPT TO:<v@other.example>\r\n", []string{"250", "250", "554 5.7.1"}},
		{"the recipient limit holds", tx + "RCPT TO:<w@example.test>\r\nRCPT TO:<x@example.test>\r\n", []string{"250", "250", "250", "250", "452 4.5.3"}},
		{"a too large message is refused after reading", tx + "DATA\r\n" + strings.Repeat("a", 5000) + "\r\n.\r\nNOOP\r\n", []string{"250", "250", "250", "354", "552 5.3.4", "250 2.0.0"}},
		{"a bare LF in data is refused", tx + "DATA\r\nx\ny\r\n.\r\nNOOP\r\n", []string{"250", "250", "250", "354", "550 5.6.0", "250 2.0.0"}},
		{"BDAT chunks form one message", tx + "BDAT 4\r\nab\r\nBDAT 0 LAST\r\n", []string{"250", "250", "250", "250 2.0.0", "250 2.0.0"}},
		{"a malformed BDAT closes the session", tx + "BDAT x\r\nNOOP\r\n", []string{"250", "250", "250", "421 4.5.4"}},
		{"errors end the session at the limit", "A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n", []string{"500", "500", "500", "500", "500", "421 4.7.0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := runSession(t, testConfig(), &fakeBackend{}, c.input)
			lines := finalLines(out)
			if len(lines) == 0 || !strings.HasPrefix(lines[0], "220 ") {
				t.Fatalf("no greeting: %q", out)
			}
			got := lines[1:]
			if len(got) != len(c.want) {
				t.Fatalf("got replies %q, want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("reply %d: got %q, want %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

// finalLines returns the last line of each reply.
func finalLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\r\n") {
		if len(l) >= 4 && l[3] == ' ' {
			lines = append(lines, l)
		}
	}
	return lines
}

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)
var enhanced = regexp.MustCompile(`^[245][0-9][0-9][ -][245]\.[0-9]{1,3}\.[0-9]{1,3} `)

// FuzzSession feeds random input to a live session: it must never panic or
// hang, every reply line must be well formed, every reply but the greeting,
// EHLO/HELO and 354 must carry an enhanced status code, and every message
// handed to the backend must have CRLF line endings only.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\n.\nMAIL FROM:<e@v.example>\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nBDAT 3 LAST\r\na\nb",
		"HELO a\r\nMAIL FROM:<a@b.example> SIZE=10\r\nRCPT TO:<postmaster>\r\nRSET\r\nVRFY x\r\nHELP\r\nNOOP\r\n",
		"EHLO a\r\nMAIL FROM:<@r.example:a@b.example> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2B\r\nRCPT TO:<u@example.test> NOTIFY=NEVER ORCPT=rfc822;u@example.test\r\n",
		"\r\n\n\r\x00\xff" + strings.Repeat("x", 700) + "\r\n",
		"STARTTLS\r\nAUTH PLAIN\r\nGET / HTTP/1.1\r\n",
	}
	auth := []string{
		"EHLO a\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO a\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\ncHc=\r\nAUTH PLAIN\r\n*\r\n",
		"EHLO a\r\nAUTH PLAIN =\r\nAUTH PLAIN !!\r\nAUTH SCRAM-SHA-256 biwsbj11c2VyLHI9YWJj\r\nAUTH CRAM-MD5\r\n",
		"AUTH PLAIN x\r\nEHLO a\r\nAUTH PLAIN\r\n" + strings.Repeat("A", 13000) + "\r\nQUIT\r\n",
	}
	for _, s := range seeds {
		f.Add(s, false, false)
	}
	for _, s := range auth {
		f.Add(s, false, true)
	}
	f.Fuzz(func(t *testing.T, input string, normalize, submission bool) {
		cfg := testConfig()
		cfg.CommandTimeout, cfg.DataTimeout = 500*time.Millisecond, 500*time.Millisecond
		if normalize {
			cfg.LineEndings = smtp.NormalizeBareLineEndings
		}
		mode := ModeMX
		if submission {
			mode, cfg.AuthWithoutTLSFromLoopback = ModeSubmission, true
		}
		b := &fakeBackend{}
		out := runSessionMode(t, cfg, b, mode, input)
		if !strings.HasSuffix(out, "\r\n") && out != "" {
			t.Fatalf("output does not end in CRLF: %q", out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if !replyLine.MatchString(l) {
				t.Fatalf("malformed reply line %q", l)
			}
			if l[0] >= '4' && !enhanced.MatchString(l) {
				t.Fatalf("error reply without an enhanced status code: %q", l)
			}
		}
		for _, m := range b.msgs {
			clean := bytes.ReplaceAll(m, []byte("\r\n"), nil)
			if bytes.ContainsAny(clean, "\r\n") {
				t.Fatalf("a delivered message holds a bare CR or LF: %q", m)
			}
		}
	})
}

// TestDataReaderHandsBack: commands and a second message sent right behind
// the first message's end (pipelined, in the same reads) are read in order
// whether the large data reader or the command reader holds them: bodies
// of either side of the 64 KiB data buffer and of the 4 KiB command one.
func TestDataReaderHandsBack(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 1 << 20
	line := strings.Repeat("y", 70) + "\r\n"
	for _, size := range []int{10, 4000, 5000, 65000, 70000, 200000} {
		body1 := "Subject: one\r\n\r\n" + strings.Repeat(line, size/len(line)+1)
		body2 := "Subject: two\r\n\r\n" + strings.Repeat(line, 3)
		b := &fakeBackend{}
		out := runSession(t, cfg, b, "EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"+
			body1+".\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"+body2+".\r\nQUIT\r\n")
		if len(b.msgs) != 2 || string(b.msgs[0]) != body1 || string(b.msgs[1]) != body2 {
			t.Fatalf("body of ~%d octets: %d messages stored; replies:\n%s", size, len(b.msgs), out)
		}
		if !strings.HasSuffix(out, "221 2.0.0 Bye\r\n") && !strings.Contains(out, "\r\n221 ") {
			t.Fatalf("body of ~%d octets: the session did not end with QUIT:\n%s", size, out)
		}
	}
}
