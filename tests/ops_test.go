package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"mailroom/internal/config"
)

// waitLog waits until the server's log contains text.
func (s *server) waitLog(text string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(s.logs(), text) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("the log never showed %q:\n%s", text, s.logs())
}

// TestSIGTERM: an idle session is told 421 at once, a message in the
// middle of DATA is finished and acknowledged, then the server exits.
func TestSIGTERM(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	idle := s.dial()
	idle.cmd("EHLO idle.example", "250 ")
	busy := s.dial()
	busy.cmd("EHLO busy.example", "250 ")
	busy.cmd("MAIL FROM:<a@remote.example>", "250 ")
	busy.cmd("RCPT TO:<alice@example.test>", "250 ")
	busy.cmd("DATA", "354 ")
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")
	time.Sleep(100 * time.Millisecond)
	s.cmd.Process.Signal(syscall.SIGTERM)
	idle.expect("421 4.3.2")
	busy.send("second half\r\n.\r\n")
	busy.expect("250 2.0.0")
	busy.cmd("QUIT", "421 4.3.2")
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not exit after SIGTERM")
	}
	s.cmd = nil
	if _, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		t.Error("the server still accepts connections after exiting")
	}
	msgs := s.mailbox("alice@example.test")
	if len(msgs) != 1 || msgs[0].Subject != "in flight" {
		t.Errorf("mailbox after shutdown: %+v", msgs)
	}
}

// TestSIGHUP: a new limit applies to new sessions after SIGHUP, open
// sessions go on, and a broken file is refused without stopping anything.
func TestSIGHUP(t *testing.T) {
	s := newServer(t, "max_recipients = 1", "")
	s.start()
	old := s.dial()
	old.cmd("EHLO old.example", "250 ")
	c := s.dial()
	c.cmd("EHLO a.example", "250 ")
	c.cmd("MAIL FROM:<a@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.test>", "452 4.5.3")

	s.writeConfig("max_recipients = 2", "")
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog("configuration reloaded")
	c = s.dial()
	c.cmd("EHLO a.example", "250 ")
	c.cmd("MAIL FROM:<a@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.test>", "250 ")
	old.cmd("NOOP", "250 ")

	os.WriteFile(s.config, []byte("hostname = \"mx.example.test\"\nbogus_key = 1\n"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog("configuration not reloaded")
	if !strings.Contains(s.logs(), "bogus_key") {
		t.Error("the reload error does not name the bad key")
	}
	old.cmd("NOOP", "250 ")
	s.dial().cmd("EHLO still.example", "250 ")
}

// TestQuota: a message too large for the whole quota is refused for good
// at RCPT; a full mailbox is refused for now.
func TestQuota(t *testing.T) {
	s := newServer(t, "", "")
	s.cli("user", "add", "small@example.test", "--quota", "3KiB", "--generate")
	s.start()
	c := s.dial()
	c.cmd("EHLO q.example", "250 ")
	c.cmd("MAIL FROM:<a@remote.example> SIZE=5000", "250 ")
	c.cmd("RCPT TO:<small@example.test>", "552 5.2.2")
	c.cmd("RSET", "250 ")
	body := "Subject: filler\r\n\r\n" + strings.Repeat("0123456789\r\n", 150)
	if r := c.sendMail("a@remote.example", []string{"small@example.test"}, body); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("first message: %q", r)
	}
	if r := c.sendMail("a@remote.example", []string{"small@example.test"}, body); !strings.HasPrefix(r, "452 4.2.2") {
		t.Fatalf("second message over quota: %q, want 452 4.2.2", r)
	}
	c.cmd("MAIL FROM:<a@remote.example> SIZE=1900", "250 ")
	c.cmd("RCPT TO:<small@example.test>", "452 4.2.2")
	c.cmd("RSET", "250 ")

	// Without SIZE the size is known only after DATA, when one reply
	// covers every recipient: permanent only if nobody can take it.
	s.cli("user", "add", "tiny@example.test", "--quota", "1KiB", "--generate")
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789\r\n", 200)
	if r := c.sendMail("a@remote.example", []string{"tiny@example.test"}, big); !strings.HasPrefix(r, "552 5.2.2") {
		t.Errorf("too big for the only recipient: %q, want 552 5.2.2", r)
	}
	if r := c.sendMail("a@remote.example", []string{"tiny@example.test", "alice@example.test"}, big); !strings.HasPrefix(r, "452 4.2.2") {
		t.Errorf("too big for one of two recipients: %q, want 452 4.2.2", r)
	}
	if n := len(s.mailbox("alice@example.test")); n != 0 {
		t.Errorf("alice got %d copies of a refused message", n)
	}
}

// TestConnectionLimits: per client IP and in total, with 421 4.7.0.
func TestConnectionLimits(t *testing.T) {
	s := newServer(t, "max_connections = 3\nmax_connections_per_client = 2", "")
	s.start()
	dialFrom := func(src string) *client { return s.dialFrom(t, s.addr, src) }
	// The start-up probe's session must be over before counting.
	s.waitLog(`msg="smtp session"`)
	time.Sleep(100 * time.Millisecond)
	dialFrom("127.0.0.51").expect("220 ")
	dialFrom("127.0.0.51").expect("220 ")
	third := dialFrom("127.0.0.51")
	if r := third.expect("421 4.7.0"); !strings.Contains(r, "from your address") {
		t.Errorf("per-IP refusal: %q", r)
	}
	dialFrom("127.0.0.52").expect("220 ")
	fourth := dialFrom("127.0.0.53")
	if r := fourth.expect("421 4.7.0"); !strings.Contains(r, "Too many connections") {
		t.Errorf("total refusal: %q", r)
	}
}

// TestCommandTimeout: a silent client is told 421 4.4.2 and disconnected.
func TestCommandTimeout(t *testing.T) {
	s := newServer(t, "", "")
	s.writeConfig("command_timeout = \"1s\"", "")
	s.start()
	c := s.dial()
	start := time.Now()
	c.expect("421 4.4.2")
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("timed out after %v, before the configured 1s", d)
	}
	if !c.closed() {
		t.Error("connection still open after the timeout")
	}
}

// TestConfigErrors: a bad configuration file stops "serve" with the key
// and line; nothing starts.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, file, want string }{
		{"an unknown key", "hostname = \"mx.example.test\"\n[smtp]\nmax_recipientz = 5\n", "cfg.toml:3: unknown key \"smtp.max_recipientz\""},
		{"a value of the wrong type", "[smtp]\nmax_recipients = \"many\"\n", "cfg.toml:2: smtp.max_recipients"},
		{"a bad address", "[listen]\nsmtp = [\"localhost\"]\n", "cfg.toml:2: listen.smtp"},
		{"a bad enum", "[smtp]\nbare_line_endings = \"sometimes\"\n", "cfg.toml:2: smtp.bare_line_endings"},
		{"a quoted boolean, in words and without Go type names", "[submission]\nhide_client_ip = \"yes\"\n", "cfg.toml:2: submission.hide_client_ip: must be true or false (without quotes), not a string"},
		{"a renamed key", "[smtp]\nmax_connections_per_ip = 5\n", `"smtp.max_connections_per_ip" is now "smtp.max_connections_per_client"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "cfg.toml")
			os.WriteFile(path, []byte(c.file), 0o600)
			out, err := exec.Command(binary, "serve", "--config", path).CombinedOutput()
			if err == nil {
				t.Fatal("serve accepted a bad configuration")
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("error %q does not contain %q", out, c.want)
			}
			if strings.Contains(string(out), "config.") || strings.Contains(string(out), "struct field") {
				t.Errorf("error %q names Go types", out)
			}
			// config check finds the same error, with what to do next.
			out, err = exec.Command(binary, "config", "check", "--config", path).CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "config check") {
				t.Errorf("config check: %v %q", err, out)
			}
		})
	}
}

// TestConfigCheck: "mailroom config check" prints the configuration in
// effect, which reads back as the same configuration; --version names a
// version.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfg.toml")
	os.WriteFile(path, []byte("hostname = \"mx.example.test\"\n[smtp]\nmax_recipients = 7\n[auth]\nban_time = \"5m\"\n"), 0o600)
	cmd := exec.Command(binary, "config", "check", "--config", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stderr.String(), "the configuration is valid") {
		t.Fatalf("config check: %v %s", err, stderr.String())
	}
	want, _ := config.Load(path)
	got, err := config.Parse("printed", stdout.Bytes())
	if err != nil {
		t.Fatalf("the printed configuration does not parse: %v\n%s", err, stdout.String())
	}
	gotText, _ := toml.Marshal(got)
	wantText, _ := toml.Marshal(want)
	if string(gotText) != string(wantText) || got.SMTP.MaxRecipients != 7 || got.Auth.BanTime.D() != 5*time.Minute {
		t.Errorf("the printed configuration reads back as\n%s\nwant\n%s", gotText, wantText)
	}
	if out, err := exec.Command(binary, "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "mailroom ") {
		t.Errorf("--version: %v %q", err, out)
	}
}

// TestDevDefaults: "mailroom serve" with no arguments starts on the
// development defaults and the commands it prints work as shown. The
// generated password survives a first start that fails after the user was
// made, in a 0600 file, until it is changed.
func TestDevDefaults(t *testing.T) {
	for _, port := range []string{"2525", "2587", "2465"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 200*time.Millisecond); err == nil {
			c.Close()
			t.Skipf("port %s is in use by something else", port)
		}
	}
	dir := t.TempDir()
	// The first start fails: the submissions port is taken.
	busy, err := net.Listen("tcp", "127.0.0.1:2465")
	if err != nil {
		t.Skipf("cannot hold port 2465: %v", err)
	}
	first := exec.Command(binary, "serve")
	first.Dir = dir
	out, err := first.CombinedOutput()
	busy.Close()
	if err == nil || !strings.Contains(string(out), "another server is using the port") {
		t.Fatalf("the first start with port 2465 taken: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(dir, "data", "dev-password"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the generated password is not kept in data/dev-password (0600): %v %v", err, fi)
	}

	s := &server{t: t, dir: dir, addr: "127.0.0.1:2525"}
	s.cmd = exec.Command(binary, "serve")
	s.cmd.Dir = dir
	s.cmd.Stdout = &lockedWriter{mu: &s.mu, w: &s.stdout}
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	s.waitLog("Send a first message")
	// Every printed command line runs as shown.
	var curlLine, swaksLine string
	for _, l := range strings.Split(s.logs(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "or:"))
		switch {
		case strings.HasPrefix(l, "printf") && strings.Contains(l, "curl "):
			curlLine = l
		case strings.HasPrefix(l, "swaks") && strings.Contains(l, " -au "):
			swaksLine = l
		}
	}
	if curlLine == "" || swaksLine == "" || strings.Contains(swaksLine, "PASSWORD") {
		t.Fatalf("the banner lacks a working curl or submission command:\n%s", s.logs())
	}
	requireTool(t, "curl")
	if out, err := exec.Command("bash", "-c", curlLine).CombinedOutput(); err != nil {
		t.Fatalf("the printed curl command failed: %v\n%s", err, out)
	}
	requireTool(t, "swaks")
	if out, err := exec.Command("bash", "-c", swaksLine+" --header 'Subject: submitted' --timeout 20").CombinedOutput(); err != nil {
		t.Errorf("the printed submission command failed: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "mailbox", "list", "dev@mailroom.test", "--json")
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"subject": "hello"`) || !strings.Contains(string(out), `"subject": "submitted"`) {
		t.Errorf("the first messages are not in dev's mailbox: %v\n%s", err, out)
	}
	// Changing the password forgets the kept one.
	cmd = exec.Command(binary, "user", "passwd", "dev@mailroom.test", "--generate")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user passwd: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "dev-password")); !os.IsNotExist(err) {
		t.Errorf("data/dev-password is still there after the password changed: %v", err)
	}
}

// TestDataTimeout: a client that stops in the middle of a message, or
// trickles it below min_data_rate, is told 421 4.4.2 after data_timeout's
// grace, and nothing of the message is kept; a 100 MB message sent at full
// speed arrives.
func TestDataTimeout(t *testing.T) {
	s := newServer(t, "data_timeout = \"1s\"\nmin_data_rate = \"1KiB\"\nmax_message_size = \"120MiB\"", "[mailbox]\nquota = \"1GiB\"\n")
	s.start()
	startData := func() *client {
		c := s.dial()
		c.cmd("EHLO slow.example", "250 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.test>", "250 ")
		c.cmd("DATA", "354 ")
		return c
	}
	c := startData()
	c.send("Subject: never finished\r\n\r\nhalf")
	c.expect("421 4.4.2")

	c = startData()
	c.send("Subject: trickled\r\n\r\n")
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				c.conn.Write([]byte("y"))
			}
		}
	}()
	r := c.expect("421 4.4.2")
	close(stop)
	if !strings.Contains(r, "too slowly") {
		t.Errorf("the refusal does not say the data was too slow: %q", r)
	}
	if n := len(s.mailbox("alice@example.test")); n != 0 {
		t.Errorf("%d messages kept from unfinished or trickled data", n)
	}

	big := startData()
	line := strings.Repeat("0123456789abcdef", 6) + "\r\n" // 98 octets
	chunk := strings.Repeat(line, 10700)                   // ~1 MiB
	big.send("Subject: large\r\n\r\n")
	for i := 0; i < 100; i++ {
		big.send(chunk)
	}
	big.send(".\r\n")
	big.expect("250 ")
	msgs := s.mailbox("alice@example.test")
	if len(msgs) != 1 || msgs[0].Size < int64(100*len(chunk)) {
		t.Errorf("the large message was not stored whole: %+v", msgs)
	}
}

// TestTrustedNetworks: a client in trusted_networks may relay; others
// are relay-denied.
func TestTrustedNetworks(t *testing.T) {
	s := newServer(t, "trusted_networks = [\"127.0.0.2/32\"]", "")
	s.start()
	for _, c := range []struct{ src, want string }{{"127.0.0.2", "250 2.1.5"}, {"127.0.0.1", "554 5.7.1"}} {
		cl := s.dialFrom(t, s.addr, c.src)
		cl.expect("220 ")
		cl.cmd("EHLO trusted.example", "250 ")
		cl.cmd("MAIL FROM:<a@example.test>", "250 ")
		cl.cmd("RCPT TO:<someone@remote.example>", c.want)
		cl.cmd("RCPT TO:<bob@example.test>", "250 ")
		cl.conn.Close()
	}
}

// TestSIGTERMUnderLoad: with many sessions busy, SIGTERM still ends the
// server within its shutdown deadline.
func TestSIGTERMUnderLoad(t *testing.T) {
	s := newServer(t, "", "")
	s.writeConfig("", "")
	s.start()
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < 30; i++ {
		go func() {
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				return
			}
			defer conn.Close()
			go io.Copy(io.Discard, conn)
			for j := 0; j < 100000; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := conn.Write([]byte("NOOP\r\nNOOP\r\nNOOP\r\n")); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second): // shutdown_timeout is 10s
		t.Fatal("the server did not exit within its shutdown deadline under load")
	}
	s.cmd = nil
}

// TestJSONLogs: --log-format json writes one JSON object per line, with a
// line per message and a line per session.
func TestJSONLogs(t *testing.T) {
	s := newServer(t, "", "")
	s.serveArgs = []string{"--log-format", "json"}
	s.start()
	c := s.dial()
	c.cmd("EHLO json.example", "250 ")
	c.sendMail("a@remote.example", []string{"alice@example.test", "bob@example.test"}, "Subject: logged\r\n\r\nx\r\n")
	c.cmd("QUIT", "221 ")
	s.waitLog(`"ehlo":"json.example"`)
	var sawMessage, sawSession bool
	for _, line := range strings.Split(s.logs(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		switch rec["msg"] {
		case "message accepted":
			sawMessage = sawMessage || rec["queue_id"] != "" && rec["from"] == "a@remote.example" && rec["recipients"] == float64(2) && rec["size"] != nil
		case "smtp session":
			sawSession = sawSession || rec["client"] == "127.0.0.1" && rec["ehlo"] == "json.example" && rec["result"] != nil
		}
	}
	if !sawMessage || !sawSession {
		t.Errorf("message line %v, session line %v:\n%s", sawMessage, sawSession, s.logs())
	}
}

// TestBackupUnderLoad: "mailroom backup" taken while clients send mail
// holds every message acknowledged before it began, large bodies whole;
// "mailroom restore" brings it back into a new data directory, where a
// server starts and serves it; a damaged backup is refused.
func TestBackupUnderLoad(t *testing.T) {
	embeddedOnly(t, "mailroom backup copies the embedded store; PostgreSQL is backed up with its own tools")
	s := newServer(t, "max_message_size = \"8MiB\"", "[mailbox]\nquota = 0\n")
	s.start()
	var mu sync.Mutex
	acked := map[string]time.Time{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	big := strings.Repeat(strings.Repeat("b", 98)+"\r\n", 15000) // ~1.5 MB: a body file
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.dial()
			c.cmd("EHLO load.example", "250 ")
			for i := 0; i < 400; i++ {
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("load-%d-%d", w, i)
				body := "x\r\n"
				if i%5 == 0 {
					body = big
				}
				if r := c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: "+subject+"\r\n\r\n"+body); strings.HasPrefix(r, "250 ") {
					mu.Lock()
					acked[subject] = time.Now()
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	began := time.Now()
	dir := filepath.Join(t.TempDir(), "backup")
	out := s.cli("backup", dir)
	close(stop)
	wg.Wait()
	if !strings.Contains(out, "backed up") {
		t.Fatalf("backup: %q", out)
	}
	var before []string
	mu.Lock()
	for subj, at := range acked {
		if at.Before(began) {
			before = append(before, subj)
		}
	}
	mu.Unlock()
	if len(before) < 10 {
		t.Fatalf("only %d messages acknowledged before the backup: the load did not run", len(before))
	}

	restored := filepath.Join(t.TempDir(), "restored")
	if _, errOut, err := s.run("", "restore", dir, "--data", restored); err != nil {
		t.Fatalf("restore: %v %s", err, errOut)
	}
	r := newServer(t, "", "")
	r.writeConfig("", "")
	cfg, _ := os.ReadFile(r.config)
	os.WriteFile(r.config, []byte(strings.Replace(string(cfg), filepath.Join(r.dir, "data"), restored, 1)), 0o600)
	r.start()
	var msgs []listedMessage
	json.Unmarshal([]byte(r.cli("mailbox", "list", "alice@example.test", "--json")), &msgs)
	have := map[string]listedMessage{}
	for _, m := range msgs {
		have[m.Subject] = m
	}
	missing := 0
	for _, subj := range before {
		if _, ok := have[subj]; !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d messages acknowledged before the backup are not in it", missing, len(before))
	}
	checked := 0
	for _, m := range msgs {
		if m.Size > 1<<20 {
			if raw := r.message("alice@example.test", m.ID); !strings.HasSuffix(raw, big) {
				t.Errorf("large message %q is damaged after backup and restore", m.Subject)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Error("no large message (body file) was in the backup")
	}
	r.dial().cmd("EHLO restored.example", "250 ")

	// A damaged backup is refused, and restore never overwrites a store.
	files, _ := filepath.Glob(filepath.Join(dir, "blobs", "*"))
	os.WriteFile(files[0], []byte("damaged"), 0o600)
	if _, errOut, err := s.run("", "restore", dir, "--data", filepath.Join(t.TempDir(), "again")); err == nil || !strings.Contains(errOut, "damaged") {
		t.Errorf("restore of a damaged backup: %v %q", err, errOut)
	}
	if _, errOut, err := s.run("", "restore", dir); err == nil || !strings.Contains(errOut, "already holds a store") {
		t.Errorf("restore over a live store: %v %q", err, errOut)
	}
}
