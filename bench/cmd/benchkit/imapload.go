package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// imapClient is a bare IMAP client over implicit TLS for the load.
type imapClient struct {
	conn net.Conn
	r    *bufio.Reader
	n    int
	long []byte // lineBytes' line when it is not in r's buffer whole
}

func dialIMAP(addr, user, pass string) (*imapClient, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	c := &imapClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if l, err := c.line(); err != nil || !strings.HasPrefix(l, "* OK") {
		conn.Close()
		return nil, fmt.Errorf("greeting %q: %v", l, err)
	}
	if _, err := c.do(fmt.Sprintf("LOGIN %q %q", user, pass)); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// line reads one line; a literal's octets are read and counted into it.
func (c *imapClient) line() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		return l, err
	}
	for strings.HasSuffix(l, "}\r\n") {
		i := strings.LastIndexByte(l, '{')
		n, perr := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l[i:], "{"), "}\r\n"))
		if i < 0 || perr != nil {
			break
		}
		if _, err := io.CopyN(io.Discard, c.r, int64(n)); err != nil {
			return l, err
		}
		rest, err := c.r.ReadString('\n')
		if err != nil {
			return l, err
		}
		l = l[:i] + "{" + strconv.Itoa(n) + "}" + rest
	}
	return l, nil
}

// do runs a command and returns its untagged lines; an error unless OK.
func (c *imapClient) do(cmd string) ([]string, error) {
	c.n++
	tag := "t" + strconv.Itoa(c.n)
	if _, err := fmt.Fprintf(c.conn, "%s %s\r\n", tag, cmd); err != nil {
		return nil, err
	}
	var out []string
	for {
		l, err := c.line()
		if err != nil {
			return out, err
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l[len(tag)+1:], "OK") {
				return out, fmt.Errorf("%s: %s", strings.SplitN(cmd, " ", 2)[0], strings.TrimSpace(l))
			}
			return out, nil
		}
		out = append(out, l)
	}
}

// each runs a command and calls fn with each untagged line, literals'
// octets left out as line does; a line is valid during the call only, and
// reading it allocates nothing. An error unless OK.
func (c *imapClient) each(cmd string, fn func(l []byte) error) error {
	c.n++
	tag := "t" + strconv.Itoa(c.n)
	if _, err := fmt.Fprintf(c.conn, "%s %s\r\n", tag, cmd); err != nil {
		return err
	}
	for {
		l, err := c.lineBytes()
		if err != nil {
			return err
		}
		if rest, ok := bytes.CutPrefix(l, []byte(tag+" ")); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return fmt.Errorf("%s: %s", strings.SplitN(cmd, " ", 2)[0], bytes.TrimSpace(l))
			}
			return nil
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}

// lineBytes is line without a string: the line is in the reader's buffer,
// or in c.long when it is longer or has literals, until the next read.
func (c *imapClient) lineBytes() ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	c.long = c.long[:0]
	for {
		b, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			c.long = append(c.long, b...)
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(c.long) > 0 {
			c.long = append(c.long, b...)
			b = c.long
		}
		i := bytes.LastIndexByte(b, '{')
		if !bytes.HasSuffix(b, []byte("}\r\n")) || i < 0 {
			return b, nil
		}
		n, err := strconv.Atoi(string(b[i+1 : len(b)-3]))
		if err != nil {
			return b, nil
		}
		c.long = append(c.long[:0], b[:len(b)-2]...) // "...{n}": the rest of the line follows the octets
		if _, err := c.r.Discard(n); err != nil {
			return nil, err
		}
	}
}

// messages returns a mailbox's message count (STATUS MESSAGES).
func (c *imapClient) messages(mailbox string) (int, error) {
	out, err := c.do("STATUS " + strconv.Quote(mailbox) + " (MESSAGES)")
	if err != nil {
		return 0, err
	}
	for _, l := range out {
		if i := strings.Index(l, "(MESSAGES "); i >= 0 {
			return strconv.Atoi(strings.TrimRight(strings.TrimSpace(l[i+len("(MESSAGES "):]), ")"))
		}
	}
	return 0, fmt.Errorf("STATUS gave no MESSAGES: %q", out)
}

// runIMAPLoad drives one kind of IMAP work against a mailbox for -d from
// -c sessions and prints the rate (operations, and messages for fetches).
func runIMAPLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imapload", flag.ContinueOnError)
	addr := fs.String("addr", "", "implicit-TLS IMAP address (loopback)")
	user := fs.String("user", "", "login name")
	pass := fs.String("pass", "", "password")
	mailbox := fs.String("mailbox", "INBOX", "mailbox to work on")
	appendTo := fs.String("append-to", "Appended", "mailbox APPEND and IDLE use (made if missing), so that the one worked on keeps its size")
	op := fs.String("op", "", "fetch-headers, fetch-bodies, search, store, append or idle")
	conc := fs.Int("c", 4, "sessions at once")
	dur := fs.Duration("d", 10*time.Second, "how long")
	size := fs.Int("size", 10240, "octets per appended message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	if *op == "idle" {
		return idleLatency(*addr, *user, *pass, *appendTo, *dur)
	}
	// Appends are counted in the store afterwards, not taken on trust.
	var counter *imapClient
	before := 0
	if *op == "append" {
		var err error
		if counter, err = dialIMAP(*addr, *user, *pass); err != nil {
			return err
		}
		defer counter.conn.Close()
		counter.do("CREATE " + strconv.Quote(*appendTo)) // NO when it exists
		if before, err = counter.messages(*appendTo); err != nil {
			return err
		}
	}
	var ops, msgs, errs atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	start := time.Now()
	body := "From: load@bench.test\r\nSubject: appended\r\n\r\n" + strings.Repeat("0123456789abcdef", *size/16) + "\r\n"
	for w := range *conc {
		wg.Go(func() {
			c, err := dialIMAP(*addr, *user, *pass)
			if err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			defer c.conn.Close()
			sel, err := c.do("SELECT " + strconv.Quote(*mailbox))
			if err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			exists := 0
			for _, l := range sel {
				if f := strings.Fields(l); len(f) == 3 && f[2] == "EXISTS" {
					exists, _ = strconv.Atoi(f[1])
				}
			}
			if *op == "append" {
				c.do("CREATE " + strconv.Quote(*appendTo)) // NO when it exists
			}
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				var cmd string
				switch *op {
				case "fetch-headers":
					cmd = "FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])"
				case "fetch-bodies":
					cmd = fmt.Sprintf("FETCH %d BODY.PEEK[]", 1+rng.IntN(max(exists, 1)))
				case "search":
					cmd = fmt.Sprintf("SEARCH TEXT %q", []string{"lorem", "quartz", "invoice", "meeting"}[i%4])
				case "search-rare":
					// One message's order number (bench/maildir.py).
					cmd = fmt.Sprintf("SEARCH TEXT \"ref-%06d\"", rng.IntN(max(exists, 1)))
				case "store":
					sign := "+"
					if i%2 == 1 {
						sign = "-"
					}
					cmd = fmt.Sprintf("STORE %d %sFLAGS.SILENT (\\Flagged)", 1+rng.IntN(max(exists, 1)), sign)
				case "append":
					cmd = fmt.Sprintf("APPEND %s {%d+}\r\n%s", strconv.Quote(*appendTo), len(body), body)
				default:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, "unknown -op "+*op)
					return
				}
				out, err := c.do(cmd)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				ops.Add(1)
				n := 0
				for _, l := range out {
					if strings.Contains(l, " FETCH ") {
						n++
					}
				}
				// The work was done: every message's headers came, a
				// search found something.
				switch {
				case *op == "fetch-headers" && n != exists:
					err = fmt.Errorf("FETCH 1:* answered for %d of %d messages", n, exists)
				case *op == "fetch-bodies" && n != 1:
					err = fmt.Errorf("FETCH of one message answered %d times", n)
				case strings.HasPrefix(*op, "search") && (len(out) == 0 || strings.TrimSpace(out[0]) == "* SEARCH"):
					err = fmt.Errorf("SEARCH found nothing: %q", out)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				msgs.Add(int64(n))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if counter != nil {
		after, err := counter.messages(*appendTo)
		if err != nil {
			return err
		}
		if int64(after-before) != ops.Load() {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, fmt.Sprintf("%d APPENDs answered OK but the mailbox grew by %d", ops.Load(), after-before))
		}
	}
	fmt.Printf("ops_per_s=%.1f msgs_per_s=%.1f ops=%d errors=%d", float64(ops.Load())/elapsed, float64(msgs.Load())/elapsed, ops.Load(), errs.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf(" first_error=%q", e)
	}
	fmt.Println()
	if errs.Load() > 0 || ops.Load() == 0 {
		return errors.New("the load failed")
	}
	return nil
}

// idleLatency measures how long a message appended by one session takes to
// reach another in IDLE on the same mailbox (EXISTS), again and again.
func idleLatency(addr, user, pass, mailbox string, dur time.Duration) error {
	watcher, err := dialIMAP(addr, user, pass)
	if err != nil {
		return err
	}
	defer watcher.conn.Close()
	writer, err := dialIMAP(addr, user, pass)
	if err != nil {
		return err
	}
	defer writer.conn.Close()
	writer.do("CREATE " + strconv.Quote(mailbox)) // NO when it exists
	if _, err := watcher.do("SELECT " + strconv.Quote(mailbox)); err != nil {
		return err
	}
	body := "From: load@bench.test\r\nSubject: wake\r\n\r\nwake up\r\n"
	var lat []time.Duration
	stop := time.Now().Add(dur)
	for time.Now().Before(stop) {
		fmt.Fprintf(watcher.conn, "i IDLE\r\n")
		if l, err := watcher.line(); err != nil || !strings.HasPrefix(l, "+") {
			return fmt.Errorf("IDLE: %q %v", l, err)
		}
		start := time.Now()
		if _, err := writer.do(fmt.Sprintf("APPEND %s {%d+}\r\n%s", strconv.Quote(mailbox), len(body), body)); err != nil {
			return err
		}
		for {
			l, err := watcher.line()
			if err != nil {
				return err
			}
			if strings.HasSuffix(strings.TrimSpace(l), "EXISTS") {
				lat = append(lat, time.Since(start))
				break
			}
		}
		fmt.Fprintf(watcher.conn, "DONE\r\n")
		for {
			l, err := watcher.line()
			if err != nil {
				return err
			}
			if strings.HasPrefix(l, "i ") {
				break
			}
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("wakeups=%d p50_ms=%.2f p99_ms=%.2f\n", len(lat), pct(0.5), pct(0.99))
	return nil
}
