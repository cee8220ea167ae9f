package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runIMAPLogins makes repeated correct IMAP logins over implicit TLS
// (connect, TLS, LOGIN, LOGOUT) from -c goroutines for -d, and prints the
// rate: what mail clients that reconnect all day cost a server.
func runIMAPLogins(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imaplogins", flag.ContinueOnError)
	addr := fs.String("addr", "", "the server's implicit-TLS IMAP address (loopback)")
	user := fs.String("user", "", "login name")
	pass := fs.String("pass", "", "password")
	conc := fs.Int("c", 8, "clients at once")
	dur := fs.Duration("d", 10*time.Second, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	cfg := &tls.Config{InsecureSkipVerify: true} // the bench servers' certificates are self-signed
	var logins, errs atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	start := time.Now()
	for range *conc {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				if err := imapLogin(*addr, *user, *pass, cfg); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				logins.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	fmt.Printf("logins_per_s=%.1f logins=%d errors=%d", float64(logins.Load())/elapsed, logins.Load(), errs.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf(" first_error=%q", e)
	}
	fmt.Println()
	if errs.Load() > 0 || logins.Load() == 0 {
		return errors.New("logins failed")
	}
	return nil
}

// imapLogin makes one login and logout.
func imapLogin(addr, user, pass string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		return fmt.Errorf("greeting %q: %v", l, err)
	}
	fmt.Fprintf(conn, "a LOGIN %q %q\r\n", user, pass)
	if err := tagged(r, "a "); err != nil {
		return err
	}
	fmt.Fprintf(conn, "b LOGOUT\r\n")
	return tagged(r, "b ")
}

// tagged reads until the tagged reply and fails unless it is OK.
func tagged(r *bufio.Reader, tag string) error {
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, tag) {
			if !strings.HasPrefix(l[len(tag):], "OK") {
				return fmt.Errorf("%s", strings.TrimSpace(l))
			}
			return nil
		}
	}
}

// runIMAPSink answers IMAP over implicit TLS as cheaply as can be: any
// LOGIN succeeds, LOGOUT ends. Against it, imaplogins measures its own
// ceiling (TLS handshakes and lines), the limit any server's figure is
// quoted against.
func runIMAPSink(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imapsink", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	big := fs.Int("big", 0, "answer imapbig's commands as for a mailbox of this many messages (canned answers: the client's floor)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	canned := cannedBig(*big)
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	l, err := tls.Listen("tcp", *addr, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return err
	}
	fmt.Println("listening", l.Addr())
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			c.Write([]byte("* OK sink ready\r\n"))
			r := bufio.NewReader(c)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				tag, rest, _ := strings.Cut(strings.TrimSpace(l), " ")
				if strings.HasPrefix(strings.ToUpper(rest), "LOGOUT") {
					c.Write([]byte("* BYE\r\n" + tag + " OK LOGOUT\r\n"))
					return
				}
				if a, ok := canned.answer(rest); ok {
					c.Write(a)
				}
				c.Write([]byte(tag + " OK done\r\n"))
			}
		}()
	}
}

// bigAnswers are the untagged answers to imapbig's commands for a mailbox
// of n messages, made once: what the client reads and checks, without a
// server's work (a quarter unseen, one in fifty from the sender asked).
type bigAnswers []struct {
	prefix string
	text   []byte
}

func cannedBig(n int) bigAnswers {
	if n <= 0 {
		return nil
	}
	lines := func(each func(i int) string) []byte {
		var b []byte
		for i := 1; i <= n; i++ {
			if s := each(i); s != "" {
				b = append(b, s...)
			}
		}
		return b
	}
	numbers := func(word string, keep func(i int) bool) []byte {
		b := []byte("* " + word)
		for i := 1; i <= n; i++ {
			if keep(i) {
				b = append(b, ' ')
				b = strconv.AppendInt(b, int64(i), 10)
			}
		}
		return append(b, "\r\n"...)
	}
	return bigAnswers{
		{"SELECT", []byte(fmt.Sprintf("* %d EXISTS\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT %d] Predicted next UID\r\n", n, n+1))},
		{"EXAMINE", []byte(fmt.Sprintf("* %d EXISTS\r\n", n))},
		{"UID FETCH 1:* (FLAGS)", lines(func(i int) string {
			flags := `\Seen`
			if i%4 == 0 {
				flags = ""
			}
			return fmt.Sprintf("* %d FETCH (UID %d FLAGS (%s))\r\n", i, i, flags)
		})},
		{"FETCH ", lines(func(i int) string {
			if i <= n-50 {
				return ""
			}
			return fmt.Sprintf("* %d FETCH (UID %d FLAGS (\\Seen) RFC822.SIZE 900)\r\n", i, i)
		})},
		{"UID SEARCH UNSEEN", numbers("SEARCH", func(i int) bool { return i%4 == 0 })},
		{"UID SEARCH FROM", numbers("SEARCH", func(i int) bool { return i%50 == 7 })},
		{"UID SORT", numbers("SORT", func(int) bool { return true })},
	}
}

func (a bigAnswers) answer(cmd string) ([]byte, bool) {
	for _, x := range a {
		if strings.HasPrefix(strings.ToUpper(cmd), x.prefix) {
			return x.text, true
		}
	}
	return nil, false
}

// selfSigned makes a throwaway certificate for the sink.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sink"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
