package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// onSmallDisk prepares a server whose data directory is on a tmpfs of the
// given size (root only: CI runs as root).
func onSmallDisk(t *testing.T, size, extraTables string) *server {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	s := newServer(t, "max_message_size = \"4MiB\"", "[mailbox]\nquota = 0\n"+extraTables)
	mnt := filepath.Join(s.dir, "small")
	os.MkdirAll(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	// Move the data directory onto the small file system.
	data := filepath.Join(s.dir, "data")
	if out, err := exec.Command("cp", "-a", data+"/.", mnt).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	os.RemoveAll(data)
	os.Symlink(mnt, data)
	return s
}

// TestDiskFull: with the data directory on a small tmpfs and no reserve, a
// full disk is answered 452 4.3.1, the server keeps running, the CLI still
// reads, and the mail already accepted stays readable, also after a restart
// on the still full disk.
func TestDiskFull(t *testing.T) {
	s := onSmallDisk(t, "3m", "[store]\nmin_free_space = 0\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO full.example", "250 ")
	body := "Subject: filler\r\n\r\n" + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 2500) // ~195 KiB
	accepted, refused := fillMailbox(t, c, body, 40)
	if refused == "" || accepted == 0 {
		t.Fatalf("accepted %d, disk full seen %q", accepted, refused)
	}
	c.cmd("NOOP", "250 ")
	s.dial().cmd("EHLO again.example", "250 ")
	if n := len(s.mailbox("alice@example.test")); n != accepted {
		t.Errorf("%d messages stored, %d acknowledged", n, accepted)
	}
	s.stop()
	s.start()
	if n := len(s.mailbox("alice@example.test")); n != accepted {
		t.Errorf("after a restart: %d messages stored, %d acknowledged", n, accepted)
	}
	msgs := s.mailbox("alice@example.test")
	if raw := s.message("alice@example.test", msgs[len(msgs)-1].ID); !strings.HasSuffix(raw, body) {
		t.Error("the last accepted message is damaged")
	}
	s.stop()
}

// TestFreeSpaceReserve: below min_free_space new mail gets 452 4.3.1 while
// the disk still has room, each refusal is logged with the free space, and
// the CLI and a restart work.
func TestFreeSpaceReserve(t *testing.T) {
	// The reserve must cover what the store writes between two checks: a
	// message, and a checkpoint copying the WAL of up to a second of
	// writes into the database. Here that is a few MiB: 16 MiB is ample.
	s := onSmallDisk(t, "40m", "[store]\nmin_free_space = \"16MiB\"\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO full.example", "250 ")
	body := "Subject: filler\r\n\r\n" + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 2500) // ~195 KiB
	accepted, refused := fillMailbox(t, c, body, 300)
	if refused == "" || accepted == 0 {
		t.Fatalf("accepted %d, refused %q", accepted, refused)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(s.dir, "small"), &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < 4<<20 {
		t.Errorf("only %d octets free when the reserve refused mail: the disk filled up first", free)
	}
	s.waitLog(`level=WARN msg="mail refused: free space below the reserve" client=127.0.0.1 free_bytes=`)
	if n := len(s.mailbox("alice@example.test")); n != accepted {
		t.Errorf("%d messages stored, %d acknowledged", n, accepted)
	}
	s.stop()
	s.start()
	s.dial().cmd("EHLO again.example", "250 ")
	if n := len(s.mailbox("alice@example.test")); n != accepted {
		t.Errorf("after a restart: %d messages stored, %d acknowledged", n, accepted)
	}
}

// fillMailbox sends body to alice up to n times until the server answers
// 452 4.3.1 (at MAIL or after the data), and returns how many were accepted
// and the refusal.
func fillMailbox(t *testing.T, c *client, body string, n int) (accepted int, refusal string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if r := c.cmd("MAIL FROM:<a@remote.example>", ""); strings.HasPrefix(r, "452 4.3.1") {
			return accepted, r
		}
		c.cmd("RCPT TO:<alice@example.test>", "250 ")
		c.cmd("DATA", "354 ")
		c.send(body + ".\r\n")
		switch r := c.reply(); {
		case strings.HasPrefix(r, "250 "):
			accepted++
		case strings.HasPrefix(r, "452 4.3.1"):
			return accepted, r
		default:
			t.Fatalf("message %d: got %q, want 250 or 452 4.3.1", i, r)
		}
	}
	return accepted, ""
}
