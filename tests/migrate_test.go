package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dovecot is a throwaway Dovecot serving IMAP on loopback, as the server a
// user moves away from.
type dovecot struct {
	dir, addr string
	cmd       *exec.Cmd
}

// startDovecot runs Debian's Dovecot with a configuration of its own (one
// user, carol, whose Maildir the caller fills first with fill).
func startDovecot(t *testing.T, fill func(maildir string)) *dovecot {
	t.Helper()
	bin := "/usr/sbin/dovecot"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("dovecot is not installed (scripts/test-deps.sh installs it)")
	}
	// Dovecot's unprivileged processes must reach its directories: not
	// under t.TempDir, which only root may enter.
	dir, err := os.MkdirTemp("", "dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"run", "state", "log", "home"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	maildir := filepath.Join(dir, "home", "carol", "Maildir")
	fill(maildir)
	if out, err := exec.Command("chown", "-R", "nobody:nogroup", filepath.Join(dir, "home")).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	os.WriteFile(filepath.Join(dir, "passwd"), []byte("carol:{PLAIN}carol-dovecot-pw\n"), 0o644)
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]s
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, port)), 0o644)
	d := &dovecot{dir: dir, addr: addr, cmd: exec.Command(bin, "-F", "-c", conf)}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log", "dovecot.log"))
			t.Fatalf("dovecot did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMoveFromDovecotWithMbsync: a whole account moves from Dovecot to
// Mailroom with mbsync: every folder (Maildir++ on Dovecot's side), every
// message, flags and dates.
func TestMoveFromDovecotWithMbsync(t *testing.T) {
	mbsync := requireTool(t, "mbsync")
	when := time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC)
	d := startDovecot(t, func(md string) {
		// A real account has the special folders on both sides.
		for _, f := range []string{"", ".Sent", ".Drafts", ".Junk", ".Trash", ".Archive", ".Lists", ".Lists.go-nuts"} {
			for _, sub := range []string{"cur", "new", "tmp"} {
				os.MkdirAll(filepath.Join(md, f, sub), 0o755)
			}
		}
		put := func(folder, name, body string) {
			path := filepath.Join(md, folder, "cur", name)
			os.WriteFile(path, []byte(body), 0o644)
			os.Chtimes(path, when, when)
		}
		for i := range 5 {
			put("", fmt.Sprintf("%d.dovecot:2,S", i), fmt.Sprintf("Message-ID: <d%d@old.example>\nSubject: old mail %d\n\nbody %d\n", i, i, i))
		}
		put("", "9.dovecot:2,FS", "Message-ID: <flagged@old.example>\nSubject: flagged\n\nimportant\n")
		put(".Sent", "10.dovecot:2,S", "Message-ID: <sent@old.example>\nSubject: sent long ago\n\nbye\n")
		put(".Lists.go-nuts", "11.dovecot:2,", "Message-ID: <list@old.example>\nSubject: list post\n\nhello list\n")
	})
	s, cert := accessServer(t) // alice already has two messages
	dir := t.TempDir()
	dhost, dport, _ := strings.Cut(d.addr, ":")
	host, port, _ := strings.Cut(s.imapsAddr, ":")
	conf := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`IMAPAccount dovecot
Host %s
Port %s
User carol
Pass carol-dovecot-pw
SSLType None
AuthMechs LOGIN

IMAPStore old
Account dovecot

IMAPAccount mailroom
Host %s
Port %s
User alice@example.test
Pass secret-alice
SSLType IMAPS
CertificateFile %s

IMAPStore new
Account mailroom

Channel move
Far :old:
Near :new:
Patterns *
Create Near
Sync Pull
CopyArrivalDate yes
SyncState %s/state/
`, dhost, dport, host, port, cert, dir)), 0o600)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	out := run(t, 2*time.Minute, mbsync, "-c", conf, "-a")
	var folders []struct {
		Name     string `json:"name"`
		Messages int    `json:"messages"`
		Unseen   int    `json:"unseen"`
	}
	if err := json.Unmarshal([]byte(s.cli("mailbox", "folders", "alice@example.test", "--json")), &folders); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for _, f := range folders {
		got[f.Name] = [2]int{f.Messages, f.Unseen}
	}
	for name, want := range map[string][2]int{"INBOX": {8, 2}, "Sent": {1, 0}, "Lists/go-nuts": {1, 1}} {
		if got[name] != want {
			t.Errorf("%s: %v messages and unseen, want %v\nfolders: %v\nmbsync said:\n%s", name, got[name], want, got, out)
		}
	}
	c := dialIMAPS(t, s.imapsAddr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	c.cmd("SELECT INBOX", "OK")
	if got := c.cmd(`SEARCH FLAGGED`, "OK"); !has(got, "* SEARCH ") || has(got, "* SEARCH\r") {
		t.Errorf("the flagged message lost its flag: %q", got)
	}
	if got := c.cmd(`FETCH 3 (INTERNALDATE)`, "OK"); !has(got, "03-Feb-2021") {
		t.Errorf("the arrival date was not kept: %q", got)
	}
}
