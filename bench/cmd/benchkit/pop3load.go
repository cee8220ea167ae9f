package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// runPOP3Load downloads a whole maildrop again and again for -d, as a POP3
// client that leaves mail on the server does: log in over implicit TLS,
// LIST, RETR of every message, QUIT. The octets of each message are
// counted and checked against LIST, so the work is known to be done.
func runPOP3Load(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pop3load", flag.ContinueOnError)
	addr := fs.String("addr", "", "implicit-TLS POP3 address (loopback)")
	user := fs.String("user", "", "login name")
	pass := fs.String("pass", "", "password")
	dur := fs.Duration("d", 10*time.Second, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	start := time.Now()
	stop := start.Add(*dur)
	var sessions, msgs, octets int64
	for time.Now().Before(stop) && ctx.Err() == nil {
		n, o, err := pop3Drop(*addr, *user, *pass)
		if err != nil {
			return fmt.Errorf("session %d: %w", sessions+1, err)
		}
		sessions++
		msgs += n
		octets += o
	}
	el := time.Since(start).Seconds()
	fmt.Printf("msgs_per_s=%.1f mb_per_s=%.1f sessions=%d msgs=%d\n", float64(msgs)/el, float64(octets)/el/1e6, sessions, msgs)
	return nil
}

// pop3Drop runs one session that retrieves every message.
func pop3Drop(addr, user, pass string) (msgs, octets int64, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(conn, 64<<10)
	w := bufio.NewWriter(conn)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	cmd := func(c string) (string, error) {
		if c != "" {
			w.WriteString(c + "\r\n")
			if err := w.Flush(); err != nil {
				return "", err
			}
		}
		l, err := line()
		if err == nil && !strings.HasPrefix(l, "+OK") {
			err = fmt.Errorf("%s: %q", strings.Fields(c + " greeting")[0], l)
		}
		return l, err
	}
	if _, err := cmd(""); err != nil {
		return 0, 0, err
	}
	if _, err := cmd("USER " + user); err != nil {
		return 0, 0, err
	}
	if _, err := cmd("PASS " + pass); err != nil {
		return 0, 0, err
	}
	if _, err := cmd("LIST"); err != nil {
		return 0, 0, err
	}
	var sizes []int64
	for {
		l, err := line()
		if err != nil {
			return 0, 0, err
		}
		if l == "." {
			break
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			return 0, 0, fmt.Errorf("LIST line %q", l)
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		return 0, 0, errors.New("the maildrop is empty")
	}
	// RETR pipelined, as fetchmail does with PIPELINING: all asked at once.
	for i := range sizes {
		fmt.Fprintf(w, "RETR %d\r\n", i+1)
	}
	if err := w.Flush(); err != nil {
		return 0, 0, err
	}
	for i, want := range sizes {
		if _, err := cmd(""); err != nil {
			return 0, 0, fmt.Errorf("RETR %d: %w", i+1, err)
		}
		var got int64
		for {
			l, err := r.ReadSlice('\n')
			if err != nil {
				return 0, 0, fmt.Errorf("RETR %d: %w", i+1, err)
			}
			if string(l) == ".\r\n" {
				break
			}
			if len(l) > 1 && l[0] == '.' {
				l = l[1:] // dot-stuffing
			}
			got += int64(len(l))
		}
		if got != want {
			return 0, 0, fmt.Errorf("RETR %d gave %d octets, LIST said %d", i+1, got, want)
		}
		octets += got
	}
	if _, err := cmd("QUIT"); err != nil {
		return 0, 0, err
	}
	return int64(len(sizes)), octets, nil
}
