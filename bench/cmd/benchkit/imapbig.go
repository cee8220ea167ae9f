package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
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
	count := func(out []string, what string) int {
		k := 0
		for _, l := range out {
			if strings.Contains(l, what) {
				k++
			}
		}
		return k
	}
	searched := func(out []string) int {
		for _, l := range out {
			if f, ok := strings.CutPrefix(strings.TrimSpace(l), "* SEARCH"); ok {
				return len(strings.Fields(f))
			}
			if f, ok := strings.CutPrefix(strings.TrimSpace(l), "* SORT"); ok {
				return len(strings.Fields(f))
			}
		}
		return 0
	}
	steps := []struct {
		name, cmd string
		check     func(out []string) error
	}{
		{"select", "SELECT INBOX", func(out []string) error {
			for _, l := range out {
				if f := strings.Fields(l); len(f) == 3 && f[2] == "EXISTS" {
					exists, _ = strconv.Atoi(f[1])
				}
			}
			if exists == 0 {
				return fmt.Errorf("SELECT: no EXISTS in %q", out)
			}
			return nil
		}},
		{"fetch-flags", "UID FETCH 1:* (FLAGS)", func(out []string) error {
			if k := count(out, " FETCH "); k != exists {
				return fmt.Errorf("UID FETCH 1:* (FLAGS) answered %d of %d", k, exists)
			}
			return nil
		}},
		{"fetch-recent-headers", "FETCH " + "-50:*" + " (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])", nil},
		{"search-unseen", "UID SEARCH UNSEEN", nil},
		{"search-from", "UID SEARCH FROM \"sender7@\"", func(out []string) error {
			if searched(out) == 0 {
				return fmt.Errorf("SEARCH FROM found nothing")
			}
			return nil
		}},
		{"sort-date", "UID SORT (REVERSE DATE) UTF-8 ALL", func(out []string) error {
			if k := searched(out); k != exists {
				return fmt.Errorf("SORT named %d of %d", k, exists)
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
			t0 := time.Now()
			out, err := c.do(cmd)
			if err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			times = append(times, float64(time.Since(t0).Microseconds())/1000)
			if st.check != nil {
				if err := st.check(out); err != nil {
					return err
				}
			}
			if st.name == "fetch-recent-headers" && count(out, " FETCH ") != min(50, exists) {
				return fmt.Errorf("FETCH of the last 50 answered %d", count(out, " FETCH "))
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
