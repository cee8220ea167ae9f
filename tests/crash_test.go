package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKill9DuringConcurrentSending: many clients send at once, the server
// is killed with SIGKILL in the middle, and after a restart every message
// that got its 250 is in the mailbox, intact, and nothing is there that was
// never sent. (A message whose 250 was lost in the crash may or may not be
// there: the client retries it, so at-least-once is the contract.)
func TestKill9DuringConcurrentSending(t *testing.T) {
	senders, runFor, rounds := 16, 1500*time.Millisecond, 1
	if os.Getenv("MAILROOM_STRESS") != "" {
		senders, runFor, rounds = 64, 5*time.Second, 3
	}
	s := newServer(t, "", "")
	acked := map[string]bool{}
	attempted := map[string]bool{}
	for round := 0; round < rounds; round++ {
		s.start()
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := 0; g < senders; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sendUntilFailure(s.addr, fmt.Sprintf("r%d-g%d", round, g), stop, func(id string, ok bool) {
					mu.Lock()
					defer mu.Unlock()
					attempted[id] = true
					if ok {
						acked[id] = true
					}
				})
			}()
		}
		time.Sleep(runFor)
		s.kill()
		close(stop)
		wg.Wait()
	}
	s.start()
	if len(acked) < 20 {
		t.Fatalf("only %d messages acknowledged before the kill: the test did not exercise anything", len(acked))
	}
	stored := readMbox(t, s, "alice@example.test")
	for id := range acked {
		if _, ok := stored[id]; !ok {
			t.Errorf("message %s got a 250 but is not in the mailbox", id)
		}
	}
	for id, body := range stored {
		if !attempted[id] {
			t.Errorf("message %s is in the mailbox but was never sent", id)
		}
		if want := messageBody(id); !strings.Contains(body, want) {
			t.Errorf("message %s is damaged: want body %q in\n%s", id, want, body)
		}
	}
	t.Logf("%d acknowledged, %d attempted, %d stored", len(acked), len(attempted), len(stored))
}

func messageBody(id string) string {
	return strings.Repeat("line of "+id+" 0123456789 abcdefghijklmnopqrstuvwxyz\n", 40)
}

// sendUntilFailure sends messages on one connection until the server goes
// away or stop is closed, reporting each message once its end of data is
// sent (ok false) and again when its 250 arrives (ok true).
func sendUntilFailure(addr, prefix string, stop chan struct{}, report func(id string, ok bool)) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	r := bufio.NewReader(c)
	readReply := func() string {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return ""
			}
			if len(line) < 4 || line[3] != '-' {
				return line
			}
		}
	}
	if !strings.HasPrefix(readReply(), "220") {
		return
	}
	fmt.Fprintf(c, "EHLO crash.example\r\n")
	if !strings.HasPrefix(readReply(), "250") {
		return
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-m%d", prefix, i)
		body := strings.ReplaceAll(messageBody(id), "\n", "\r\n")
		fmt.Fprintf(c, "MAIL FROM:<crash@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
		for j := 0; j < 3; j++ {
			if rep := readReply(); !strings.HasPrefix(rep, "250") && !strings.HasPrefix(rep, "354") {
				return
			}
		}
		report(id, false)
		fmt.Fprintf(c, "Subject: %s\r\n\r\n%s.\r\n", id, body)
		if !strings.HasPrefix(readReply(), "250") {
			return
		}
		report(id, true)
	}
}

// readMbox exports a mailbox as mbox and returns the bodies by subject.
func readMbox(t *testing.T, s *server, user string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	s.cli("export", user, dir, "--format", "mbox")
	data, err := os.ReadFile(filepath.Join(dir, "INBOX.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range strings.Split(string(data), "\nFrom ")[0:] {
		i := strings.Index(m, "Subject: ")
		if i < 0 {
			continue
		}
		subj, body, _ := strings.Cut(m[i+len("Subject: "):], "\n")
		if _, dup := out[subj]; dup {
			t.Errorf("message %s stored twice", subj)
		}
		out[subj] = body
	}
	return out
}
