package main

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// TestIMAPClientLines: each hands over every untagged line whole, however
// it falls in the read buffer, with literals' octets left out, and stops
// at the tagged answer.
func TestIMAPClientLines(t *testing.T) {
	long := "* SEARCH" + strings.Repeat(" 12345", 100)
	answer := "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n" +
		long + "\r\n" +
		"* 2 FETCH (UID 2 BODY[HEADER] {12}\r\nSubject: x\r\n FLAGS () BODY[TEXT] {3}\r\na\nb)\r\n" +
		"t1 OK done\r\n"
	want := []string{"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n", long + "\r\n", "* 2 FETCH (UID 2 BODY[HEADER] {12} FLAGS () BODY[TEXT] {3})\r\n"}
	for _, size := range []int{16, 64, 4096} {
		client, server := net.Pipe()
		go func() {
			r := bufio.NewReader(server)
			r.ReadString('\n') // the command
			server.Write([]byte(answer))
		}()
		c := &imapClient{conn: client, r: bufio.NewReaderSize(client, size)}
		var got []string
		err := c.each("FETCH 1:2 ALL", func(l []byte) error {
			got = append(got, string(l))
			return nil
		})
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("buffer of %d: each gave %q, %v; want %q", size, got, err, want)
		}
		client.Close()
		server.Close()
	}
}
