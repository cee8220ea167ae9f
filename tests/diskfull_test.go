package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskFull: with the data directory on a small tmpfs, a full disk is
// answered 452 4.3.1, the server keeps running, and the mail already
// accepted stays readable, also after a restart.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	s := newServer(t, "max_message_size = \"4MiB\"", "[mailbox]\nquota = 0\n")
	mnt := filepath.Join(s.dir, "small")
	os.MkdirAll(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt).CombinedOutput(); err != nil {
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
	s.start()
	c := s.dial()
	c.cmd("EHLO full.example", "250 ")
	body := "Subject: filler\r\n\r\n" + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 2500) // ~195 KiB
	accepted, full := 0, false
	for i := 0; i < 40 && !full; i++ {
		r := c.sendMail("a@remote.example", []string{"alice@example.test"}, body)
		switch {
		case strings.HasPrefix(r, "250 "):
			accepted++
		case strings.HasPrefix(r, "452 4.3.1"):
			full = true
		default:
			t.Fatalf("message %d: got %q, want 250 or 452 4.3.1", i, r)
		}
	}
	if !full || accepted == 0 {
		t.Fatalf("accepted %d, disk full seen %v", accepted, full)
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
