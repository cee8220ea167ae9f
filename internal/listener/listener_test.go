package listener

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPrefixes(t *testing.T) {
	cases := []struct {
		name string
		p    Prefixes
		ip   string
		want string
	}{
		{"an IPv4 client is one address by default", DefaultPrefixes, "192.0.2.7", "192.0.2.7/32"},
		{"an IPv6 client is its /64 by default", DefaultPrefixes, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"an IPv4-mapped address counts as IPv4", DefaultPrefixes, "::ffff:192.0.2.7", "192.0.2.7/32"},
		{"a configured IPv4 prefix groups a network", Prefixes{IPv4: 24, IPv6: 48}, "192.0.2.7", "192.0.2.0/24"},
		{"a configured IPv6 prefix groups a network", Prefixes{IPv4: 24, IPv6: 48}, "2001:db8:1:2::9", "2001:db8:1::/48"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Client(netip.MustParseAddr(c.ip)).String(); got != c.want {
				t.Errorf("Client(%s) = %s, want %s", c.ip, got, c.want)
			}
		})
	}
}

func TestGate(t *testing.T) {
	g := NewGate(Limits{MaxConns: 3, MaxPerClient: 2, Prefixes: DefaultPrefixes})
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2") // one /64
	c := netip.MustParseAddr("192.0.2.1")
	steps := []struct {
		name string
		ip   netip.Addr
		want Refusal
	}{
		{"the first connection from a /64 is admitted", a, 0},
		{"a second address in the same /64 is admitted up to the limit", b, 0},
		{"a third from the /64 is refused as too many from the client", a, TooManyFromClient},
		{"another client is admitted", c, 0},
		{"beyond the total, anyone is refused", netip.MustParseAddr("192.0.2.2"), TooManyConnections},
	}
	var keys []netip.Prefix
	for _, s := range steps {
		key, why := g.Admit(s.ip)
		if why != s.want {
			t.Fatalf("%s: Admit(%s) = %v, want %v", s.name, s.ip, why, s.want)
		}
		if why == 0 {
			keys = append(keys, key)
		}
	}
	g.Release(keys[0])
	if _, why := g.Admit(b); why != 0 {
		t.Errorf("after a release, the /64 is admitted again: %v", why)
	}
	g.SetLimits(Limits{MaxConns: 10, MaxPerClient: 10, Prefixes: DefaultPrefixes})
	if _, why := g.Admit(c); why != 0 || g.Open() != 4 {
		t.Errorf("new limits apply to new connections: %v, open %d", why, g.Open())
	}
}

// pair returns a server-side Conn and the client's end of a real TCP
// connection on loopback.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return NewConn(server, time.Second), client
}

// trickle writes one byte every interval until stop is closed.
func trickle(w io.Writer, interval time.Duration, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(interval):
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
		}
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestConnDeadlines(t *testing.T) {
	t.Run("a command line trickled byte by byte times out at its deadline", func(t *testing.T) {
		c, client := pair(t)
		stop := make(chan struct{})
		defer close(stop)
		go trickle(client, 20*time.Millisecond, stop)
		c.ExpectLine(300 * time.Millisecond)
		start := time.Now()
		_, err := bufio.NewReader(c).ReadString('\n')
		if !isTimeout(err) || c.Expired() != LimitWait {
			t.Fatalf("err = %v, limit %v; want a timeout of the wait", err, c.Expired())
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the trickle kept the line open for %v", d)
		}
	})
	t.Run("message data slower than the minimum rate times out after the grace", func(t *testing.T) {
		c, client := pair(t)
		stop := make(chan struct{})
		defer close(stop)
		go trickle(client, 10*time.Millisecond, stop) // ~100 octets/s
		c.ExpectData(300*time.Millisecond, 1000)
		_, err := io.Copy(io.Discard, c)
		if !isTimeout(err) || c.Expired() != LimitRate {
			t.Fatalf("err = %v, limit %v; want the rate limit", err, c.Expired())
		}
	})
	t.Run("message data at a real speed arrives whole", func(t *testing.T) {
		c, client := pair(t)
		const size = 8 << 20
		go func() {
			buf := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(buf) {
				client.Write(buf)
			}
			client.Close()
		}()
		c.ExpectData(300*time.Millisecond, 1000)
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != size {
			t.Fatalf("read %d octets, err %v; want %d", n, err, size)
		}
	})
	t.Run("the session cap ends even a busy session", func(t *testing.T) {
		c, client := pair(t)
		go io.WriteString(client, strings.Repeat("NOOP\r\n", 10))
		c.SetSessionLimit(200 * time.Millisecond)
		r := bufio.NewReader(c)
		var err error
		for err == nil {
			c.ExpectLine(time.Minute)
			_, err = r.ReadString('\n')
		}
		if !isTimeout(err) || c.Expired() != LimitSession {
			t.Fatalf("err = %v, limit %v; want the session cap", err, c.Expired())
		}
	})
	t.Run("an interrupt ends the wait at once", func(t *testing.T) {
		c, _ := pair(t)
		c.ExpectLine(time.Minute)
		go func() { time.Sleep(50 * time.Millisecond); c.Interrupt() }()
		_, err := c.Read(make([]byte, 10))
		if !isTimeout(err) || c.Expired() != LimitInterrupted {
			t.Fatalf("err = %v, limit %v; want an interrupt", err, c.Expired())
		}
	})
}

// lineHandler greets and echoes nothing: enough to count admissions.
type lineHandler struct{ served chan *Conn }

func (h lineHandler) ServeConn(c *Conn) {
	c.WriteWithin([]byte("hello\r\n"), time.Second)
	h.served <- c
	c.ExpectLine(5 * time.Second)
	c.Read(make([]byte, 1)) // until the client closes
}

func (lineHandler) Refusal(why Refusal) []byte { return []byte("busy: " + why.String() + "\r\n") }

func TestServiceRefusesBeyondItsLimits(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService("test", Limits{MaxConns: 2, MaxPerClient: 1, Prefixes: DefaultPrefixes}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := lineHandler{served: make(chan *Conn, 4)}
	done := make(chan error)
	go func() { done <- svc.Serve(l, h) }()
	dial := func(src string) string {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for _, s := range []struct{ src, want string }{
		{"127.0.0.1", "hello"},
		{"127.0.0.1", "busy: too many connections from the client's address"},
		{"127.0.0.2", "hello"},
		{"127.0.0.3", "busy: too many connections\r"},
	} {
		if got := dial(s.src); !strings.HasPrefix(got, s.want) {
			t.Errorf("from %s: %q, want %q", s.src, got, s.want)
		}
	}
	l.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}
