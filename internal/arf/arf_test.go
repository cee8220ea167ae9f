package arf

import (
	"slices"
	"strings"
	"testing"
)

// report is shaped as RFC 5965's example (Appendix B.2), with the original
// message's header carrying a Mailroom Received field.
const report = "From: <abusedesk@example.com>\r\n" +
	"Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n" +
	"Subject: FW: Earn money\r\n" +
	"To: <abuse@example.net>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=feedback-report;\r\n" +
	"     boundary=\"part1_13d.2e68ed54_boundary\"\r\n" +
	"\r\n" +
	"--part1_13d.2e68ed54_boundary\r\n" +
	"Content-Type: text/plain; charset=\"US-ASCII\"\r\n" +
	"Content-Transfer-Encoding: 7bit\r\n" +
	"\r\n" +
	"This is an email abuse report for an email message received from IP\r\n" +
	"192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n" +
	"--part1_13d.2e68ed54_boundary\r\n" +
	"Content-Type: message/feedback-report\r\n" +
	"\r\n" +
	"Feedback-Type: abuse\r\n" +
	"User-Agent: SomeGenerator/1.0\r\n" +
	"Version: 1\r\n" +
	"Original-Mail-From: <somespammer@example.net>\r\n" +
	"Original-Rcpt-To: <User@example.com>\r\n" +
	"Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n" +
	"Reporting-MTA: dns; mail.example.com\r\n" +
	"Source-IP: 192.0.2.1\r\n" +
	"\r\n" +
	"--part1_13d.2e68ed54_boundary\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"Content-Disposition: inline\r\n" +
	"\r\n" +
	"Received: from mailserver.example.net\r\n" +
	"\tby mx.example.net (Mailroom) with ESMTPSA id 06h4s1uujc9noe8d\r\n" +
	"\tfor <user@example.com>; Thu, 8 Mar 2005 14:00:00 -0500\r\n" +
	"From: <somespammer@example.net>\r\n" +
	"To: <Undisclosed Recipients>\r\n" +
	"Subject: Earn money\r\n" +
	"Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.net>\r\n" +
	"\r\n" +
	"Spam Spam Spam\r\n" +
	"--part1_13d.2e68ed54_boundary--\r\n"

func TestParse(t *testing.T) {
	rep, err := Parse(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	if rep.FeedbackType != "abuse" || rep.UserAgent != "SomeGenerator/1.0" || rep.ReportingMTA != "dns; mail.example.com" ||
		rep.SourceIP != "192.0.2.1" || rep.OriginalMailFrom != "somespammer@example.net" || !slices.Equal(rep.OriginalRcptTo, []string{"user@example.com"}) {
		t.Errorf("report = %+v", rep)
	}
	if got := rep.Original.Get("Message-Id"); got != "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>" {
		t.Errorf("original Message-ID = %q", got)
	}
	if ids := rep.QueueIDs("mx.example.net"); !slices.Equal(ids, []string{"06h4s1uujc9noe8d"}) {
		t.Errorf("QueueIDs = %v", ids)
	}
	if ids := rep.QueueIDs("other.example"); len(ids) != 0 {
		t.Errorf("QueueIDs of another host = %v", ids)
	}
}

func TestParseNotARF(t *testing.T) {
	for name, msg := range map[string]string{
		"plain":               "Subject: hi\r\n\r\nhello\r\n",
		"another report type": strings.Replace(report, "report-type=feedback-report", "report-type=delivery-status", 1),
		"no feedback part":    strings.Replace(report, "message/feedback-report", "text/plain", 1),
		"not a message":       "\x00\x01",
	} {
		if _, err := Parse(strings.NewReader(msg)); err != ErrNotARF {
			t.Errorf("%s: %v, want ErrNotARF", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(report)
	f.Add("Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n--x\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n--x--\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		rep, err := Parse(strings.NewReader(msg))
		if err == nil && rep.FeedbackType == "" {
			t.Error("a report without a Feedback-Type was taken")
		}
		if err == nil {
			rep.QueueIDs("mx.example.net")
		}
	})
}
