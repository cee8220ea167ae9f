package main

import (
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDurableSink: with a journal, a message acknowledged with 250 is in
// the journal file, envelope and data, and counted; the zero-filled part
// is overwritten from the start, not appended after.
func TestDurableSink(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{journal: j}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.session(c)
		}
	}()
	body := "Subject: durable\r\n\r\nkept before the 250\r\n"
	if err := smtp.SendMail(ln.Addr().String(), nil, "a@client.test", []string{"b@sink.test"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.nth(1); n != 1 {
		t.Fatalf("the sink counted %d messages, want 1", n)
	}
	data, err := os.ReadFile(filepath.Join(dir, "sink-journal"))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1<<20 {
		t.Errorf("journal of %d bytes, want the zero-filled 1 MiB overwritten in place", len(data))
	}
	for _, want := range []string{"MAIL FROM:<a@client.test>", "RCPT TO:<b@sink.test>", "kept before the 250"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the journal lacks %q", want)
		}
	}
	if !strings.HasPrefix(string(data), "MAIL FROM:") {
		t.Errorf("the journal does not start with the message: %q", data[:min(len(data), 40)])
	}
}
