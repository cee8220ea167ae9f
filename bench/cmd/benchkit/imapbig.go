package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// runIMAPBig times what a client does on a very large mailbox, each
// command -n times in one session, and prints each one's median in
// milliseconds. Every answer is checked for the messages it must name.
func runIMAPBig(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imapbig", flag.ContinueOnError)
	addr := fs.String("addr", "", "implicit-TLS IMAP address (loopback)")
	user := fs.String("user", "", "login name")
	pass := fs.String("pass", "", "password")
	n := fs.Int("n", 5, "times each command runs")
	verbose := fs.Bool("v", false, "print every time, not only the median")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	c, err := dialIMAP(*addr, *user, *pass)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	exists := 0
	// Answers are read line by line into the client's buffer and tallied,
	// none kept: 100,000 lines as strings cost the client more than some
	// servers take to send them (fresh pages fault in slowly on some VMs).
	steps := []struct {
		name, cmd string
		check     func(t tally) error
	}{
		{"select", "SELECT INBOX", func(t tally) error {
			if exists = t.exists; exists == 0 {
				return fmt.Errorf("SELECT: no EXISTS")
			}
			return nil
		}},
		{"fetch-flags", "UID FETCH 1:* (FLAGS)", func(t tally) error {
			if t.fetches != exists {
				return fmt.Errorf("UID FETCH 1:* (FLAGS) answered %d of %d", t.fetches, exists)
			}
			return nil
		}},
		{"fetch-recent-headers", "FETCH " + "-50:*" + " (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])", func(t tally) error {
			if t.fetches != min(50, exists) {
				return fmt.Errorf("FETCH of the last 50 answered %d", t.fetches)
			}
			return nil
		}},
		{"search-unseen", "UID SEARCH UNSEEN", nil},
		{"search-from", "UID SEARCH FROM \"sender7@\"", func(t tally) error {
			if t.searched == 0 {
				return fmt.Errorf("SEARCH FROM found nothing")
			}
			return nil
		}},
		{"sort-date", "UID SORT (REVERSE DATE) UTF-8 ALL", func(t tally) error {
			if t.searched != exists {
				return fmt.Errorf("SORT named %d of %d", t.searched, exists)
			}
			return nil
		}},
	}
	for _, st := range steps {
		var times []float64
		for range *n {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cmd := st.cmd
			if st.name == "fetch-recent-headers" {
				cmd = fmt.Sprintf("FETCH %d:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])", max(exists-49, 1))
			}
			var t tally
			t0 := time.Now()
			if err := c.each(cmd, t.add); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			times = append(times, float64(time.Since(t0).Microseconds())/1000)
			if st.check != nil {
				if err := st.check(t); err != nil {
					return err
				}
			}
			if st.name == "select" {
				if _, err := c.do("UNSELECT"); err != nil {
					if _, err := c.do("CLOSE"); err != nil {
						return err
					}
				}
				if len(times) < *n {
					continue
				}
				if _, err := c.do("EXAMINE INBOX"); err != nil { // for what follows
					return err
				}
			}
		}
		if *verbose {
			fmt.Fprintf(os.Stderr, "%s: %v\n", st.name, times)
		}
		slices.Sort(times)
		fmt.Printf("%s_ms=%.1f ", st.name, times[len(times)/2])
	}
	fmt.Printf("messages=%d\n", exists)
	return nil
}

// tally is what imapbig checks of an answer, counted as its lines arrive:
// FETCH lines, the numbers of a SEARCH or SORT line, EXISTS.
type tally struct{ fetches, searched, exists int }

func (t *tally) add(l []byte) error {
	switch {
	case bytes.Contains(l, []byte(" FETCH ")):
		t.fetches++
	case bytes.HasPrefix(l, []byte("* SEARCH")) || bytes.HasPrefix(l, []byte("* SORT")):
		t.searched = bytes.Count(bytes.TrimSpace(l), []byte(" ")) - 1 // numbers, each after one space
	case bytes.HasSuffix(l, []byte(" EXISTS\r\n")):
		if f := bytes.Fields(l); len(f) == 3 {
			t.exists, _ = strconv.Atoi(string(f[1]))
		}
	}
	return nil
}
