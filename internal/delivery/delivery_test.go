package delivery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/dns"
	"mailroom/internal/dns/dnstest"
	"mailroom/internal/listener"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
)

type sink struct {
	mu       sync.Mutex
	msgs     []string
	params   []smtp.MailParams
	sessions []string         // session ID per transaction
	remotes  []netip.AddrPort // client address per transaction
}

func (s *sink) Mail(_ context.Context, si *smtpserver.SessionInfo, _ smtp.Address, p smtp.MailParams) error {
	s.mu.Lock()
	s.params = append(s.params, p)
	s.sessions = append(s.sessions, si.ID)
	s.remotes = append(s.remotes, si.Remote)
	s.mu.Unlock()
	return nil
}
func (s *sink) Rcpt(_ context.Context, _ *smtpserver.SessionInfo, _ *smtpserver.Transaction, to smtp.Address, _ smtp.RcptParams) (any, error) {
	switch to.Local {
	case "refused":
		return nil, smtp.Errorf(550, "5.1.1", "No such user")
	case "later":
		return nil, smtp.Errorf(451, "4.3.0", "Try later")
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

// hop runs a next hop on ip:port.
func hop(t *testing.T, ip string, port int) *sink {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hop"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cfg := &smtpserver.Config{Hostname: "hop.test", MaxMessageSize: 1 << 20, MaxRecipients: 10, MaxLineLength: 512,
		MaxErrors: 5, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	b := &sink{}
	srv := smtpserver.New(cfg, b, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(listener.NewService("smtp", listener.Limits{MaxConns: 10, MaxPerClient: 10}, slog.Default()), l, smtpserver.ModeMX)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return b
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.41:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestDeliver(t *testing.T) {
	port := freePort(t)
	up := hop(t, "127.0.0.42", port) // 127.0.0.41 stays down
	dnsAddr := dnstest.Start(t, map[string][]string{
		"two.test. MX":     {"10 down.two.test.", "20 up.two.test."},
		"down.two.test. A": {"127.0.0.41"},
		"up.two.test. A":   {"127.0.0.42"},
		"null.test. MX":    {"0 ."},
		"self.test. A":     {"127.0.0.42"},
		"allgone.test. MX": {"10 down.two.test."},
	}).Addr
	r, _ := dns.New(dnsAddr, "")
	d := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second}, r)
	body := "Subject: hi\r\n\r\nhello\r\n"
	job := func(domain string, rcpts ...string) Job {
		j := Job{Domain: domain, MailFrom: "a@example.test", Size: int64(len(body)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
		for _, a := range rcpts {
			j.Recipients = append(j.Recipients, Recipient{Address: a, Params: "NOTIFY=FAILURE"})
		}
		return j
	}
	type want struct{ delivered, permanent bool }
	cases := []struct {
		name string
		job  Job
		want []want
	}{
		{"the second exchanger takes it when the first is down; one recipient refused, one deferred",
			job("two.test", "x@two.test", "refused@two.test", "later@two.test"), []want{{true, false}, {false, true}, {false, false}}},
		{"a domain without MX is its own exchanger", job("self.test", "x@self.test"), []want{{true, false}}},
		{"a null MX fails at once", job("null.test", "x@null.test"), []want{{false, true}}},
		{"a domain that does not exist fails at once", job("nowhere.test", "x@nowhere.test"), []want{{false, true}}},
		{"SERVFAIL is tried again later", job("x.servfail.test", "x@x.servfail.test"), []want{{false, false}}},
		{"no reachable exchanger is tried again later", job("allgone.test", "x@allgone.test"), []want{{false, false}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := d.Deliver(context.Background(), c.job)
			for i, w := range c.want {
				if out[i].Delivered != w.delivered || out[i].Permanent != w.permanent || out[i].Detail == "" && !w.delivered {
					t.Errorf("recipient %d: %+v, want %+v", i, out[i], w)
				}
			}
			if c.want[0].delivered && !strings.HasPrefix(out[0].TLS, "TLS") {
				t.Errorf("delivered without TLS: %+v", out[0])
			}
		})
	}
	if len(up.msgs) != 2 || !strings.HasSuffix(up.msgs[0], body) {
		t.Errorf("the next hop got %q", up.msgs)
	}

	t.Run("MAIL parameters are passed on to a hop that offers them", func(t *testing.T) {
		j := job("self.test", "x@self.test")
		j.Ret, j.EnvID, j.EightBit, j.SMTPUTF8 = "HDRS", "env id+1", true, true
		if out := d.Deliver(context.Background(), j); !out[0].Delivered {
			t.Fatalf("%+v", out[0])
		}
		p := up.params[len(up.params)-1]
		if p.Ret != "HDRS" || p.EnvID != "env id+1" || p.Body != "8BITMIME" || !p.SMTPUTF8 || p.Size != int64(len(body)) {
			t.Errorf("the next hop saw %+v", p)
		}
	})
}

func testJob(domain, from string, rcpts ...string) Job {
	body := "Subject: hi\r\n\r\nhello\r\n"
	j := Job{Domain: domain, MailFrom: from, Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	for _, a := range rcpts {
		j.Recipients = append(j.Recipients, Recipient{Address: a})
	}
	return j
}

// TestReuse: messages to one destination share a connection while it is
// kept; one the next hop closed while idle is replaced without a failure;
// with reuse off every message has its own.
func TestReuse(t *testing.T) {
	port := freePort(t)
	up := hop(t, "127.0.0.43", port)
	dnsAddr := dnstest.Start(t, map[string][]string{"reuse.test. A": {"127.0.0.43"}}).Addr
	r, _ := dns.New(dnsAddr, "")
	deliverAll := func(d *Deliverer, n int) {
		for i := range n {
			if out := d.Deliver(context.Background(), testJob("reuse.test", "a@example.test", fmt.Sprintf("u%d@reuse.test", i))); !out[0].Delivered {
				t.Fatalf("message %d: %+v", i, out[0])
			}
		}
	}
	sessions := func() map[string]int {
		up.mu.Lock()
		defer up.mu.Unlock()
		m := map[string]int{}
		for _, s := range up.sessions {
			m[s]++
		}
		up.sessions = nil
		return m
	}

	d := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second, IdleTime: time.Minute}, r)
	deliverAll(d, 5)
	if s := sessions(); len(s) != 1 {
		t.Errorf("5 messages in a row took %d connections, want 1: %v", len(s), s)
	}
	// The hop goes away and comes back: the kept connection is dead.
	d.pool.mu.Lock()
	for _, cs := range d.pool.idle {
		for _, c := range cs {
			c.c.Close()
		}
	}
	d.pool.mu.Unlock()
	deliverAll(d, 2)
	if s := sessions(); len(s) != 1 {
		t.Errorf("after the kept connection closed: %d connections, want 1 new one: %v", len(s), s)
	}
	d.Close()

	off := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second, IdleTime: -1}, r)
	deliverAll(off, 3)
	if s := sessions(); len(s) != 3 {
		t.Errorf("with reuse off, 3 messages took %d connections: %v", len(s), s)
	}
}

// TestSourcePools: connections for a sender in a pool come from the
// pool's addresses in turn; other senders use the default pool.
func TestSourcePools(t *testing.T) {
	port := freePort(t)
	up := hop(t, "127.0.0.44", port)
	dnsAddr := dnstest.Start(t, map[string][]string{"pools.test. A": {"127.0.0.44"}}).Addr
	r, _ := dns.New(dnsAddr, "")
	addr := netip.MustParseAddr
	d := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second, IdleTime: -1, Pools: []SourcePool{
		{Name: "bulk", Addrs: []netip.Addr{addr("127.0.0.45"), addr("127.0.0.46"), addr("::1")}, Senders: []string{"news.example.test"}},
		{Name: "vip", Addrs: []netip.Addr{addr("127.0.0.47")}, Senders: []string{"ceo@news.example.test"}},
		{Name: "rest", Addrs: []netip.Addr{addr("127.0.0.48")}, Senders: []string{"*"}},
	}}, r)
	for _, from := range []string{"letter@news.example.test", "Letter@News.example.test", "ceo@news.example.test", "bob@example.test", ""} {
		if out := d.Deliver(context.Background(), testJob("pools.test", from, "x@pools.test")); !out[0].Delivered {
			t.Fatalf("from %q: %+v", from, out[0])
		}
	}
	var got []string
	for _, a := range up.remotes {
		got = append(got, a.Addr().String())
	}
	want := []string{"127.0.0.45", "127.0.0.46", "127.0.0.47", "127.0.0.48", "127.0.0.48"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("connections came from %v, want %v", got, want)
	}
}

// TestDeliverIPv6: an exchanger with only an AAAA record is reached over
// IPv6.
func TestDeliverIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback here: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	up := hop(t, "::1", port)
	dnsAddr := dnstest.Start(t, map[string][]string{"six.test. MX": {"10 mx.six.test."}, "mx.six.test. AAAA": {"::1"}, "mx.six.test. A": nil}).Addr
	r, _ := dns.New(dnsAddr, "")
	d := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second}, r)
	defer d.Close()
	if out := d.Deliver(context.Background(), testJob("six.test", "a@example.test", "x@six.test")); !out[0].Delivered {
		t.Fatalf("%+v", out[0])
	}
	if len(up.remotes) != 1 || !up.remotes[0].Addr().Is6() {
		t.Errorf("the hop saw %v", up.remotes)
	}
}

// TestDeliverBusyGreeting: an exchanger that greets with 421 is passed
// over for the next one.
func TestDeliverBusyGreeting(t *testing.T) {
	port := freePort(t)
	busy, err := net.Listen("tcp", net.JoinHostPort("127.0.0.49", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	go func() {
		for {
			c, err := busy.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("421 4.3.2 busy, try another\r\n"))
			c.Close()
		}
	}()
	up := hop(t, "127.0.0.50", port)
	dnsAddr := dnstest.Start(t, map[string][]string{"busy.test. MX": {"10 a.busy.test.", "20 b.busy.test."},
		"a.busy.test. A": {"127.0.0.49"}, "b.busy.test. A": {"127.0.0.50"}}).Addr
	r, _ := dns.New(dnsAddr, "")
	d := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second}, r)
	defer d.Close()
	out := d.Deliver(context.Background(), testJob("busy.test", "a@example.test", "x@busy.test"))
	if !out[0].Delivered || out[0].RemoteMTA != "b.busy.test" || len(up.msgs) != 1 {
		t.Errorf("%+v; the second exchanger got %d messages", out[0], len(up.msgs))
	}
}

// TestHeldUntilRecorded: with Job.Held, a connection serves its next
// message only after the caller gave it back (its outcomes recorded); a
// message meanwhile does not wait for it but has a connection of its own,
// and once it is back the next message reuses it. With reuse off nothing is
// held.
func TestHeldUntilRecorded(t *testing.T) {
	port := freePort(t)
	up := hop(t, "127.0.0.44", port)
	dnsAddr := dnstest.Start(t, map[string][]string{"held.test. A": {"127.0.0.44"}}).Addr
	r, _ := dns.New(dnsAddr, "")
	d := New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second, IdleTime: time.Minute}, r)
	var release func()
	held := func(to string) Job {
		j := testJob("held.test", "a@example.test", to)
		j.Held = func(f func()) { release = f }
		return j
	}
	sessions := func() []string {
		up.mu.Lock()
		defer up.mu.Unlock()
		return append([]string(nil), up.sessions...)
	}
	if out := d.Deliver(context.Background(), held("u1@held.test")); !out[0].Delivered || release == nil {
		t.Fatalf("first message: %+v, release given: %v", out[0], release != nil)
	}
	first := release
	if out := d.Deliver(context.Background(), held("u2@held.test")); !out[0].Delivered {
		t.Fatalf("second message: %+v", out[0])
	}
	if s := sessions(); len(s) != 2 || s[0] == s[1] {
		t.Fatalf("while the first connection was held the second message went over %v, want a connection of its own", s)
	}
	first()
	first() // twice is harmless
	if out := d.Deliver(context.Background(), testJob("held.test", "a@example.test", "u3@held.test")); !out[0].Delivered {
		t.Fatalf("third message: %+v", out[0])
	}
	if s := sessions(); len(s) != 3 || s[2] != s[0] {
		t.Errorf("after the first connection came back the third message went over %v, want the first connection", s)
	}

	d = New(Config{LocalName: "mx.example.test", Port: port, Timeout: 5 * time.Second, IdleTime: -1}, r)
	release = nil
	d.Deliver(context.Background(), held("u4@held.test"))
	if release != nil {
		t.Error("a connection that will not be reused was held")
	}
}
