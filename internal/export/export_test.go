package export

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"
)

func TestMaildirFlags(t *testing.T) {
	cases := []struct {
		flags []string
		want  string
	}{
		{nil, ""},
		{[]string{`\Seen`}, "S"},
		{[]string{`\Seen`, `\Answered`, `\Flagged`}, "FRS"},
		{[]string{`\Deleted`, `\Draft`, `$Junk`}, "DT"},
	}
	for _, c := range cases {
		if got := maildirFlags(c.flags); got != c.want {
			t.Errorf("maildirFlags(%v) = %q, want %q", c.flags, got, c.want)
		}
	}
}

func TestMboxMessage(t *testing.T) {
	cases := []struct {
		name, sender, msg, want string
	}{
		{"CRLF becomes LF and a blank line ends the message",
			"a@b.example", "Subject: x\r\n\r\nbody\r\n",
			"From a@b.example Mon Jan  2 15:04:05 2006\nSubject: x\n\nbody\n\n"},
		{"From lines in the body are quoted, quoted ones once more",
			"a@b.example", "S: x\r\n\r\nFrom here\r\n>From there\r\nFromage\r\n",
			"From a@b.example Mon Jan  2 15:04:05 2006\nS: x\n\n>From here\n>>From there\nFromage\n\n"},
		{"the null sender is MAILER-DAEMON",
			"", "S: x\r\n\r\nb",
			"From MAILER-DAEMON Mon Jan  2 15:04:05 2006\nS: x\n\nb\n\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			mi := store.MessageInfo{Date: time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC), SMTPEnvelope: store.SMTPEnvelope{MailFrom: c.sender}}
			if err := writeMboxMessage(w, mi, strings.NewReader(c.msg)); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if out.String() != c.want {
				t.Errorf("got\n%q\nwant\n%q", out.String(), c.want)
			}
		})
	}
}
