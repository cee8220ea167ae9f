package listener

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestGated: a gated net.Listener hands out connections within the
// gate's limits, closes the one beyond them at once, and admits again
// once a connection is closed (twice: its place is given back once).
func TestGated(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService("http", Limits{MaxConns: 10, MaxPerClient: 2, Prefixes: DefaultPrefixes}, slog.New(slog.DiscardHandler))
	gl := svc.Gated(ln)
	defer gl.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := gl.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	served := func() net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection was handed out")
			return nil
		}
	}
	dial()
	first := served()
	dial()
	served()
	third := dial() // over the per-client limit: closed by the listener
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the third connection read %d, %v; want it closed (EOF)", n, err)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the limit was handed out: %v", c.RemoteAddr())
	default:
	}
	first.Close()
	first.Close()
	if n := svc.Gate.Open(); n != 1 {
		t.Fatalf("after closing one (twice), %d open, want 1", n)
	}
	dial()
	served()
	if n := svc.Gate.Open(); n != 2 {
		t.Errorf("%d open, want 2", n)
	}
}
