package smtp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// BenchmarkParseCommand: the commands of one transaction, as a client
// sends them.
func BenchmarkParseCommand(b *testing.B) {
	lines := [][]byte{
		[]byte("EHLO client.example.com\r\n"),
		[]byte("MAIL FROM:<alice@example.com> SIZE=10240 BODY=8BITMIME\r\n"),
		[]byte("RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net\r\n"),
		[]byte("DATA\r\n"),
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			if _, err := ParseCommand(l); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkParsePath: a reverse path with parameters.
func BenchmarkParsePath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParsePath("<alice.smith+tag@mail.example.com> SIZE=10240", true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadData: a 10 KiB message of 76-column lines, through the DATA
// reader into a discarding writer.
func BenchmarkReadData(b *testing.B) {
	var msg strings.Builder
	msg.WriteString("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: a benchmark\r\n\r\n")
	for msg.Len() < 10<<10 {
		msg.WriteString(strings.Repeat("x", 74) + "\r\n")
	}
	msg.WriteString(".\r\n")
	data := []byte(msg.String())
	src := bytes.NewReader(data)
	r := bufio.NewReaderSize(src, 4096)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(data)
		r.Reset(src)
		if _, err := ReadData(r, io.Discard, 1<<20, RejectBareLineEndings); err != nil {
			b.Fatal(err)
		}
	}
}
