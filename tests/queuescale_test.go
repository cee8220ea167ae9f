package tests

import (
	"bufio"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/store/sqlite/sqlitetest"
)

// TestQueueScale (make stress; skipped otherwise) measures what issue 6
// asks of a large outbound queue, on the real binary over loopback: the
// accept rate and the server's CPU per message with the queue empty and
// with 100,000 deferred entries, in turn on the same data directory
// (empty, full, empty, full, empty, so that drift shows); how long a
// restart takes to listen and to deliver a new message; and the server's
// CPU over 30 s idle. bench/results/queue-scale-*.md has the figures.
func TestQueueScale(t *testing.T) {
	if os.Getenv("MAILROOM_STRESS") == "" {
		t.Skip("a measurement, not a test: make stress")
	}
	const (
		deferred = 100_000
		conns    = 20               // SMTP connections of the load driver
		loadFor  = 8 * time.Second  // per kind of load and phase
		maxLoad  = 100_000          // messages per kind and phase, at most
		idleFor  = 30 * time.Second // idle CPU window
	)
	hop := startHop(t, "127.0.0.90", func(_ int, line string) string { return hopDefault(line) })
	s := relayVia(t, "127.0.0.90", hop, `trusted_networks = ["127.0.0.1/32"]`, "")
	s.serveArgs = []string{"--log-level", "info"}
	dataDir := filepath.Join(s.dir, "data")
	kinds := []struct {
		name    string
		relayed bool
		rcpt    func(g, i int) string
	}{
		{"inbound (local mailbox)", false, func(int, int) string { return "alice@example.test" }},
		{"relay (queued, delivered to a loopback next hop)", true, func(g, i int) string { return fmt.Sprintf("r%d-%d@far.test", g, i) }},
	}
	var report []string
	for phase, full := range []bool{false, true, false, true, false} {
		queue := "empty"
		if full {
			queue = fmt.Sprintf("%d deferred", deferred)
		}
		s.stop()
		if full {
			now := time.Now()
			if err := sqlitetest.AddDeferred(t.Context(), dataDir, sqlitetest.Deferred{Entries: deferred,
				From: now.Add(time.Hour), To: now.Add(5 * 24 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
		} else if phase > 0 {
			emptyQueue(t, dataDir)
		}
		started := time.Now()
		s.start()
		listening := time.Since(started)
		before := hop.received()
		relayOne(t, s.addr)
		for hop.received() == before {
			if time.Since(started) > time.Minute {
				t.Fatalf("phase %d: the first message after the restart was not delivered in a minute", phase+1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		firstDelivery := time.Since(started)
		time.Sleep(2 * time.Second) // the start's work and the first delivery settle
		pid := s.cmd.Process.Pid
		cpu0 := processCPU(t, pid)
		time.Sleep(idleFor)
		idleCPU := processCPU(t, pid) - cpu0
		report = append(report, fmt.Sprintf("| %d | %s | restart | listening %v, first relayed message at the next hop %v | | | idle %v: server CPU %v | %s |",
			phase+1, queue, listening.Round(time.Millisecond), firstDelivery.Round(time.Millisecond), idleFor, idleCPU, loadAvg()))
		t.Log(report[len(report)-1])
		for _, k := range kinds {
			cpu0 := processCPU(t, pid)
			hop0 := hop.received()
			r := runLoad(s.addr, conns, loadFor, maxLoad, k.rcpt)
			if r.accepted == 0 {
				t.Fatalf("phase %d, %s: nothing accepted (%d errors)", phase+1, k.name, r.errors)
			}
			// Relayed messages still queued are delivered before the next
			// measurement, which they would disturb; the CPU per message
			// then covers its delivery too.
			drain := ""
			if k.relayed {
				drained := time.Now()
				for hop.received()-hop0 < r.accepted && time.Since(drained) < 3*time.Minute {
					time.Sleep(10 * time.Millisecond)
				}
				drain = fmt.Sprintf("; %d at the next hop %v after the load", hop.received()-hop0, time.Since(drained).Round(time.Millisecond))
			}
			cpu := processCPU(t, pid) - cpu0
			report = append(report, fmt.Sprintf("| %d | %s | %s | %d accepted in %v: **%.0f msg/s**%s | p50 %v, p99 %v | %d errors | server CPU %v: %.0f µs/msg | %s |",
				phase+1, queue, k.name, r.accepted, r.elapsed.Round(time.Millisecond), float64(r.accepted)/r.elapsed.Seconds(), drain,
				r.percentile(50), r.percentile(99), r.errors, cpu, float64(cpu.Microseconds())/float64(r.accepted), loadAvg()))
			t.Log(report[len(report)-1])
		}
	}
	t.Logf("\n| phase | queue | load | result | 250 latency | errors | server CPU | load average |\n|---|---|---|---|---|---|---|---|\n%s",
		strings.Join(report, "\n"))
}

// received counts the messages the hop has taken.
func (h *fakeHop) received() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.sessions {
		n += len(s.messages)
	}
	return n
}

// emptyQueue removes every queue entry of a stopped server and the
// messages no mailbox holds.
func emptyQueue(t *testing.T, dataDir string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "mailroom.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DELETE FROM queue`, `DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM mailbox_messages)`,
		`PRAGMA wal_checkpoint(TRUNCATE)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// relayOne relays one message to far.test.
func relayOne(t *testing.T, addr string) {
	t.Helper()
	r := runLoad(addr, 1, time.Minute, 1, func(int, int) string { return "restart@far.test" })
	if r.accepted != 1 {
		t.Fatalf("relaying one message: %d errors", r.errors)
	}
}

// processCPU returns the user and system CPU time a process has used so
// far (/proc/PID/stat utime and stime, in USER_HZ = 100 ticks a second).
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ") // after the command name, which may hold spaces
	f := strings.Fields(rest)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parsing /proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// loadAvg is the machine's load average over the last minute: other
// work on the machine shows in it.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// loadResult is what a load run saw.
type loadResult struct {
	accepted, errors int
	elapsed          time.Duration
	latencies        []time.Duration // from the end of data to its 250
}

func (r loadResult) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	return l[(len(l)-1)*p/100].Round(10 * time.Microsecond)
}

// runLoad sends messages over conns connections to addr, one transaction
// after another on each, for d or until limit have been accepted in all.
// rcpt names the recipient of connection g's i-th message.
func runLoad(addr string, conns int, d time.Duration, limit int, rcpt func(g, i int) string) loadResult {
	var mu sync.Mutex
	var res loadResult
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for g := range conns {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); {
				ok := sendSession(addr, deadline, func() (string, bool) {
					mu.Lock()
					defer mu.Unlock()
					if res.accepted >= limit {
						return "", false
					}
					i++
					return rcpt(g, i), true
				}, func(lat time.Duration, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						res.errors++
						return
					}
					res.accepted++
					res.latencies = append(res.latencies, lat)
				})
				if !ok {
					return
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// loadBody is a 2 KiB message.
var loadBody = "From: load@example.test\r\nTo: someone\r\nSubject: load\r\n\r\n" +
	strings.Repeat("A line of a message of the load test, of no interest to anyone.\r\n", 30)

// sendSession sends transactions on one connection until the deadline or
// next says there are no more. It reports each message's outcome to done,
// and returns false once there are no more messages to send.
func sendSession(addr string, deadline time.Time, next func() (string, bool), done func(time.Duration, error)) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		done(0, err)
		time.Sleep(100 * time.Millisecond)
		return true
	}
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func() (string, error) {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return line, err
			}
			if len(line) < 4 || line[3] != '-' {
				return line, nil
			}
		}
	}
	expect := func(code string) error {
		l, err := reply()
		if err == nil && !strings.HasPrefix(l, code) {
			err = fmt.Errorf("want %s, got %q", code, l)
		}
		return err
	}
	if err := expect("220"); err != nil {
		done(0, err)
		return true
	}
	fmt.Fprintf(c, "EHLO load.example.test\r\n")
	if err := expect("250"); err != nil {
		done(0, err)
		return true
	}
	for time.Now().Before(deadline) {
		to, ok := next()
		if !ok {
			fmt.Fprintf(c, "QUIT\r\n")
			return false
		}
		fmt.Fprintf(c, "MAIL FROM:<load@example.test>\r\nRCPT TO:<%s>\r\nDATA\r\n", to)
		for _, code := range []string{"250", "250", "354"} {
			if err := expect(code); err != nil {
				done(0, err)
				return true
			}
		}
		sent := time.Now()
		if _, err := fmt.Fprintf(c, "%s.\r\n", loadBody); err != nil {
			done(0, err)
			return true
		}
		err := expect("250")
		done(time.Since(sent), err)
		if err != nil {
			return true
		}
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return true
}
