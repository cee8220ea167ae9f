package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/listener"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
)

// sink is a backend that refuses recipients named "refused" and keeps
// what it receives.
type sink struct {
	mu   sync.Mutex
	msgs []string
}

func (s *sink) Mail(context.Context, *smtpserver.SessionInfo, smtp.Address, smtp.MailParams) error {
	return nil
}

func (s *sink) Rcpt(_ context.Context, _ *smtpserver.SessionInfo, _ *smtpserver.Transaction, to smtp.Address, _ smtp.RcptParams) (any, error) {
	if to.Local == "refused" {
		return nil, smtp.Errorf(550, "5.1.1", "No such user")
	}
	return nil, nil
}

func (s *sink) Deliver(_ context.Context, _ *smtpserver.SessionInfo, _ *smtpserver.Transaction, m *spool.Spool) error {
	b, _ := io.ReadAll(m.Reader())
	s.mu.Lock()
	s.msgs = append(s.msgs, string(b))
	s.mu.Unlock()
	return nil
}

func selfSigned(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "next.test"}, DNSNames: []string{"next.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// nextHop runs a Mailroom SMTP server on loopback as the next hop.
func nextHop(t *testing.T, withTLS bool) (string, *sink) {
	cfg := &smtpserver.Config{Hostname: "next.test", MaxMessageSize: 1 << 20, MaxRecipients: 10, MaxLineLength: 512,
		MaxErrors: 5, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	if withTLS {
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
	}
	b := &sink{}
	srv := smtpserver.New(cfg, b, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(listener.NewService("smtp", listener.Limits{MaxConns: 10, MaxPerClient: 10}, slog.Default()), l, smtpserver.ModeMX)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return l.Addr().String(), b
}

func TestSend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		withTLS bool
		size    bool // known size: BDAT
	}{
		{"plaintext with DATA", false, false},
		{"STARTTLS with BDAT", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, got := nextHop(t, tc.withTLS)
			c, err := Dial(context.Background(), addr, Options{LocalName: "mx.example.test", TLS: &tls.Config{InsecureSkipVerify: true}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if (c.TLS != nil) != tc.withTLS {
				t.Errorf("TLS = %v, want %v", c.TLS != nil, tc.withTLS)
			}
			body := "Subject: hi\r\n\r\n.hidden line\r\n..two dots\r\nend\r\n"
			size := int64(-1)
			if tc.size {
				size = int64(len(body))
			}
			res, err := c.Send(context.Background(), "a@example.test", "", []Rcpt{{Addr: "x@next.test"}, {Addr: "refused@next.test"}, {Addr: "y@next.test", Params: "NOTIFY=FAILURE"}},
				strings.NewReader(body), size)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rcpts[0].Code != 250 || res.Rcpts[1].Code != 550 || res.Rcpts[1].Enhanced != "5.1.1" || res.Rcpts[2].Code != 250 {
				t.Errorf("per-recipient replies: %+v %+v %+v", res.Rcpts[0], res.Rcpts[1], res.Rcpts[2])
			}
			// A second message on the same connection.
			if _, err := c.Send(context.Background(), "", "", []Rcpt{{Addr: "x@next.test"}}, strings.NewReader("Subject: 2\r\n\r\nx\r\n"), -1); err != nil {
				t.Fatal(err)
			}
			if len(got.msgs) != 2 || !strings.HasSuffix(got.msgs[0], body) {
				t.Errorf("the next hop got %q", got.msgs)
			}
		})
	}
}

// fakeServer answers a scripted dialogue: each line read gets the next
// canned answer.
func fakeServer(t *testing.T, greeting string, answers map[string]string) string {
	return hostileHop(t, func(conn net.Conn) {
		io.WriteString(conn, greeting)
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			io.WriteString(conn, answers[strings.ToUpper(verb)])
		}
	})
}

func TestDialFailures(t *testing.T) {
	ehlo := "250-fake.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
	cases := []struct {
		name      string
		greeting  string
		answers   map[string]string
		opts      Options
		stage     string
		temporary bool
	}{
		{"a 4xx greeting is temporary", "421 4.3.2 busy\r\n", nil, Options{}, "greeting", true},
		{"a 5xx greeting is permanent", "554 5.7.1 go away\r\n", nil, Options{}, "greeting", false},
		{"replies injected before the TLS handshake are not believed", "220 fake\r\n",
			map[string]string{"EHLO": ehlo, "STARTTLS": "220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n"},
			Options{TLS: &tls.Config{InsecureSkipVerify: true}}, "starttls", true},
		{"required TLS that is not offered fails", "220 fake\r\n", map[string]string{"EHLO": "250 fake.test\r\n"},
			Options{TLS: &tls.Config{}, RequireTLS: true}, "starttls", true},
		{"a malformed reply is an error", "220 fake\r\n", map[string]string{"EHLO": "25O oops\r\n"}, Options{}, "ehlo", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := fakeServer(t, c.greeting, c.answers)
			c.opts.LocalName, c.opts.Timeout = "mx.example.test", 5*time.Second
			_, err := Dial(context.Background(), addr, c.opts)
			var e *Error
			if !errors.As(err, &e) || e.Stage != c.stage || e.Temporary() != c.temporary {
				t.Errorf("err = %v; want stage %s, temporary %v", err, c.stage, c.temporary)
			}
		})
	}
}

func TestWriteDotStuffed(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{".x\r\n..y\r\n", "..x\r\n...y\r\n.\r\n"},
		{"bare\nlf\n.\n", "bare\r\nlf\r\n..\r\n.\r\n"},
		{"bare\rcr", "bare\r\ncr\r\n.\r\n"},
		{"no final newline", "no final newline\r\n.\r\n"},
		{"", ".\r\n"},
		{"ends in cr\r", "ends in cr\r\n.\r\n"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		writeDotStuffed(w, strings.NewReader(c.in))
		w.Flush()
		if out.String() != c.want {
			t.Errorf("writeDotStuffed(%q) = %q, want %q", c.in, out.String(), c.want)
		}
	}
}

// TestWriteDotStuffedLongLines: lines longer than the read buffer, and a
// CR, LF or dot on either side of its boundary, come out as the octet by
// octet path writes them.
func TestWriteDotStuffedLongLines(t *testing.T) {
	const buf = 32 << 10
	var inputs []string
	for _, at := range []int{buf - 2, buf - 1, buf, buf + 1} {
		for _, mark := range []string{"\r\n", "\r", "\n", "\r\n.", "\n.", "\r.", "."} {
			inputs = append(inputs, strings.Repeat("x", at)+mark+"tail\r\n.last\r\n")
		}
	}
	inputs = append(inputs, strings.Repeat("y", 3*buf)+"\r\n", strings.Repeat("ab\r\n.c\r\n", buf))
	for _, in := range inputs {
		var got, want bytes.Buffer
		w := bufio.NewWriter(&got)
		writeDotStuffed(w, strings.NewReader(in))
		w.Flush()
		w = bufio.NewWriter(&want)
		sol, cr := stuffOctets(w, []byte(in), true, false)
		if cr || !sol {
			w.WriteString("\r\n")
		}
		w.WriteString(".\r\n")
		w.Flush()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("input of %d octets ending %q: output differs from the octet by octet path", len(in), in[max(0, len(in)-30):])
		}
	}
}

// FuzzWriteDotStuffed: the output never holds a bare CR or LF, and the
// server's DATA reader reads back exactly the input with CRLF endings.
func FuzzWriteDotStuffed(f *testing.F) {
	for _, s := range []string{"a\r\n.b\r\n", "\n.\n", "\r.\r", "..\r\n.\r\n", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		writeDotStuffed(w, strings.NewReader(in))
		w.Flush()
		if bytes.ContainsAny(bytes.ReplaceAll(out.Bytes(), []byte("\r\n"), nil), "\r\n") {
			t.Fatalf("bare CR or LF in %q", out.String())
		}
		var back bytes.Buffer
		res, err := smtp.ReadData(bufio.NewReader(&out), &back, 1<<30, smtp.RejectBareLineEndings)
		if err != nil || !res.Complete || res.BareEOL {
			t.Fatalf("ReadData: %+v %v", res, err)
		}
		want := strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n").Replace(in)
		if want != "" && !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		if back.String() != want {
			t.Fatalf("read back %q, want %q", back.String(), want)
		}
	})
}

// hostileHop listens on loopback and runs serve on each connection (a next
// hop that may follow SMTP, or not at all).
func hostileHop(t *testing.T, serve func(net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
	return l.Addr().String()
}

// TestHostileReplies: a next hop that sends an endless line, endless
// continuation lines or a drip is cut off with a clear error, in bounded
// memory and time.
func TestHostileReplies(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	cases := []struct {
		name  string
		serve func(net.Conn)
		want  string
	}{
		{"an endless line", func(c net.Conn) {
			c.Write([]byte("220 "))
			for i := 0; i < 16<<10; i++ { // up to 1 GiB; the client stops reading long before
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}, "longer than 4096 octets"},
		{"endless continuation lines", func(c net.Conn) {
			line := []byte("220-" + strings.Repeat("y", 100) + "\r\n")
			for i := 0; i < 1<<20; i++ {
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		}, "more than 200 lines"},
		{"a drip", func(c net.Conn) {
			for i := 0; i < 600; i++ {
				if _, err := c.Write([]byte("2")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}, "too slowly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileHop(t, tc.serve)
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Dial(context.Background(), addr, Options{LocalName: "mx.example.test", Timeout: 20 * time.Second, ReplyGrace: 300 * time.Millisecond})
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			var e *Error
			if !errors.As(err, &e) || e.Stage != "greeting" || !strings.Contains(err.Error(), tc.want) || !e.Temporary() {
				t.Fatalf("Dial = %v, want a temporary greeting error saying %q", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("cut off after %v, not long before the reply's timeout", d)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("reading the reply allocated %d MB", grew>>20)
			}
		})
	}
}

// FuzzReadReply feeds random bytes to the reply reader: it must never panic,
// and a reply it accepts has a code from 200 to 599 and no more lines than
// allowed.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "250-a\r\n250-b\r\n250 c\r\n", "550 5.1.1 no\r\n", "220-x\r\n221 y\r\n", "2", "\r\n", "999 x\r\n",
		"250-" + strings.Repeat("z", 5000) + "\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		server, client := net.Pipe()
		go func() { server.Write(data); server.Close() }()
		c := &Client{conn: client, opts: Options{Timeout: time.Second, ReplyGrace: time.Second}}
		c.r = newReader(c)
		rep, err := c.read("fuzz")
		client.Close()
		if err != nil {
			return
		}
		if rep.Code < 200 || rep.Code > 599 || strings.Count(rep.Text, "\n") >= maxReplyLines {
			t.Fatalf("accepted %+v from %q", rep, data)
		}
	})
}

// TestSlowReaderGetsTheWholeMessage: a next hop that reads a large message
// slowly but steadily gets all of it: the write deadline is per chunk, not
// one for the whole message.
func TestSlowReaderGetsTheWholeMessage(t *testing.T) {
	const size = 16 << 20
	got := make(chan int, 1)
	addr := hostileHop(t, func(conn net.Conn) {
		io.WriteString(conn, "220 slow.test\r\n")
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
			case "EHLO":
				io.WriteString(conn, "250 slow.test\r\n")
			case "DATA":
				io.WriteString(conn, "354 go on\r\n")
				n, buf, tail := 0, make([]byte, 64<<10), []byte{}
				for {
					time.Sleep(10 * time.Millisecond) // ~6 MB/s: 16 MB take longer than the timeout
					k, err := io.ReadAtLeast(r, buf, 1)
					n += k
					tail = append(tail, buf[:k]...)
					tail = tail[max(0, len(tail)-5):]
					if err != nil || bytes.Equal(tail, []byte("\r\n.\r\n")) {
						break
					}
				}
				got <- n
				io.WriteString(conn, "250 2.0.0 ok\r\n")
			case "QUIT":
				io.WriteString(conn, "221 bye\r\n")
				return
			default:
				io.WriteString(conn, "250 ok\r\n")
			}
		}
	})
	c, err := Dial(context.Background(), addr, Options{LocalName: "mx.example.test", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := strings.Repeat(strings.Repeat("z", 98)+"\r\n", size/100)
	if _, err := c.Send(context.Background(), "a@example.test", "", []Rcpt{{Addr: "b@slow.test"}}, strings.NewReader(body), -1); err != nil {
		t.Fatalf("a steady slow reader did not get the message: %v", err)
	}
	if n := <-got; n < len(body) {
		t.Errorf("the hop got %d of %d octets", n, len(body))
	}
}
