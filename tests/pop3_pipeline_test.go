package tests

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// pop3Session is a bare POP3 client over implicit TLS.
type pop3Session struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialPOP3S(t *testing.T, addr string) *pop3Session {
	t.Helper()
	conn := dialTLS(t, addr)
	p := &pop3Session{t: t, conn: conn, r: bufio.NewReader(conn)}
	p.status("+OK")
	return p
}

func (p *pop3Session) send(lines ...string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pop3Session) line() string {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *pop3Session) status(want string) string {
	p.t.Helper()
	l := p.line()
	if !strings.HasPrefix(l, want) {
		p.t.Fatalf("got %q, want %s", l, want)
	}
	return l
}

// multiline reads a multi-line answer's lines, dot-stuffing undone.
func (p *pop3Session) multiline() string {
	p.t.Helper()
	var b strings.Builder
	for {
		l := p.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(l, "."))
		b.WriteString("\n")
	}
}

// TestPOP3PipelinedRetr: RETR commands sent all at once (as fetchmail
// does) give each message exactly as RETR one at a time does, small and
// large, dot-stuffed, with a refused RETR among them.
func TestPOP3PipelinedRetr(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO pop.example", "250 ")
	const n = 40
	for i := range n {
		body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n.starts with a dot\r\n..two dots\r\n", i, i)
		if i == 7 {
			body += strings.Repeat("a line of the large message\r\n", 40000) // over 1 MiB
		}
		c.sendMail("sender@remote.example", []string{"alice@example.test"}, body)
	}
	login := func() *pop3Session {
		p := dialPOP3S(t, s.pop3sAddr)
		p.send("USER alice@example.test", "PASS secret-alice")
		p.status("+OK")
		p.status("+OK")
		return p
	}
	one := login()
	want := map[int]string{}
	for i := 1; i <= n; i++ {
		one.send(fmt.Sprintf("RETR %d", i))
		one.status("+OK")
		want[i] = one.multiline()
	}
	one.send("QUIT")
	one.status("+OK")

	all := login()
	cmds := []string{"DELE 5"}
	for i := 1; i <= n; i++ {
		cmds = append(cmds, fmt.Sprintf("RETR %d", i))
	}
	all.send(cmds...)
	all.status("+OK") // DELE
	for i := 1; i <= n; i++ {
		if i == 5 {
			all.status("-ERR")
			continue
		}
		all.status("+OK")
		if got := all.multiline(); got != want[i] {
			t.Errorf("pipelined RETR %d: %d octets differ from RETR alone (%d octets)", i, len(got), len(want[i]))
		}
	}
	// SMTP's dot-stuffing took one dot of each line; POP3's gave it back.
	if !strings.Contains(want[1], "\nstarts with a dot\n.two dots\n") || len(want[8]) < 1<<20 {
		t.Errorf("messages read: %q..., large one %d octets", want[1][:min(len(want[1]), 200)], len(want[8]))
	}
	all.send("RSET", "QUIT")
	all.status("+OK")
	all.status("+OK")
}
