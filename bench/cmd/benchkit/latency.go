package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// runLatency sends -n messages one after another, each on a new
// connection, and prints the distribution of the time from connect to the
// 250 after end of data.
func runLatency(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address, host:port")
	n := fs.Int("n", 500, "messages")
	size := fs.Int("size", 10240, "body bytes (besides the header fields)")
	from := fs.String("from", "sender@client.test", "envelope sender")
	to := fs.String("to", "", "recipient")
	pause := fs.Duration("pause", 20*time.Millisecond, "wait between messages (low load)")
	timeout := fs.Duration("timeout", 10*time.Second, "limit for one message")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *addr == "" || *to == "" || *n < 1 {
		fs.Usage()
		return errUsage
	}
	body := latencyBody(*from, *to, *size)
	var took []time.Duration
	failed := 0
	var firstErr error
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		d, err := sendOne(*addr, *from, *to, body, *timeout)
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			took = append(took, d)
		}
		time.Sleep(*pause)
	}
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "benchkit latency: %d failed, the first: %v\n", failed, firstErr)
	}
	if len(took) == 0 {
		return fmt.Errorf("no message was accepted")
	}
	slices.Sort(took)
	fmt.Printf("n=%d ok=%d failed=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		*n, len(took), failed, ms(quantile(took, 0.50)), ms(quantile(took, 0.90)),
		ms(quantile(took, 0.99)), ms(took[len(took)-1]))
	return nil
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencyBody is a message of about size bytes of body in 78-character lines,
// dot-terminated.
func latencyBody(from, to string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: latency probe\r\nMessage-ID: <%d@client.test>\r\n\r\n", from, to, time.Now().UnixNano())
	line := strings.Repeat("x", 78) + "\r\n"
	for written := 0; written < size; written += len(line) {
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

// sendOne runs one SMTP transaction on a new connection and returns the
// time from the start of connect to the reply after end of data.
func sendOne(addr, from, to string, body []byte, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(timeout))
	r := bufio.NewReader(c)
	steps := []struct{ send, want string }{
		{"", "220"},
		{"EHLO client.test\r\n", "250"},
		{"MAIL FROM:<" + from + ">\r\n", "250"},
		{"RCPT TO:<" + to + ">\r\n", "250"},
		{"DATA\r\n", "354"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := c.Write([]byte(s.send)); err != nil {
				return 0, err
			}
		}
		if err := expect(r, s.want); err != nil {
			return 0, fmt.Errorf("after %q: %w", strings.TrimSpace(s.send), err)
		}
	}
	if _, err := c.Write(body); err != nil {
		return 0, err
	}
	if err := expect(r, "250"); err != nil {
		return 0, fmt.Errorf("after end of data: %w", err)
	}
	took := time.Since(start)
	c.Write([]byte("QUIT\r\n"))
	expect(r, "221")
	return took, nil
}

// expect reads a (possibly multi-line) reply and checks its code.
func expect(r *bufio.Reader, code string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 || line[:3] != code {
			return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if line[3] == ' ' {
			return nil
		}
	}
}
