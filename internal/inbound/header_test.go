package inbound

import (
	"strings"
	"testing"
	"time"
)

func TestScanHeader(t *testing.T) {
	cases := []struct {
		name, msg string
		want      headerInfo
	}{
		{"plain fields are read", "From: a@b.example\r\nSubject: hi\r\n\r\nbody", headerInfo{From: "a@b.example", Subject: "hi"}},
		{"a display name is kept", "From: \"Ann Example\" <a@b.example>\r\n\r\n", headerInfo{From: "Ann Example <a@b.example>"}},
		{"encoded words are decoded", "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\n", headerInfo{Subject: "Grüße"}},
		{"folded fields are unfolded", "Subject: one\r\n two\r\n\r\n", headerInfo{Subject: "one two"}},
		{"Received fields are counted", "Received: a\r\nReceived: b\r\n\tc\r\nX: y\r\n\r\nReceived: not a header\r\n", headerInfo{Received: 2}},
		{"the body is not read as header", "Subject: a\r\n\r\nSubject: b\r\n", headerInfo{Subject: "a"}},
		{"a message without a body works", "Subject: only", headerInfo{Subject: "only"}},
		{"bare LF line endings work", "From: x@y.example\nSubject: lf\n\nbody", headerInfo{From: "x@y.example", Subject: "lf"}},
		{"the first From and Subject win", "Subject: a\r\nSubject: b\r\n\r\n", headerInfo{Subject: "a"}},
		{"garbage From is kept as text", "From: not an address ((\r\n\r\n", headerInfo{From: "not an address (("}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := scanHeader(strings.NewReader(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			if got.From != c.want.From || got.Subject != c.want.Subject || got.Received != c.want.Received {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestScanHeaderSubmissionFields(t *testing.T) {
	h, _ := scanHeader(strings.NewReader("From: Ann <ann@a.example>, bob@b.example\r\nSender: c@c.example\r\nMessage-ID: <x@y>\r\n\r\n"))
	if len(h.Authors) != 2 || h.Froms != 1 || !h.Complete || !h.HasMessageID || h.HasDate {
		t.Errorf("got %+v", h)
	}
	if addrs, ok := authorAddresses(h.Authors[0].Value); !ok || len(addrs) != 2 || addrs[1] != "bob@b.example" {
		t.Errorf("authors of From: %v %v", addrs, ok)
	}
	if h, _ := scanHeader(strings.NewReader("X: " + strings.Repeat("a", maxHeaderScan))); h.Complete {
		t.Error("a header cut by the scan limit is complete")
	}
	if h, _ := scanHeader(strings.NewReader("Subject: only")); !h.Complete {
		t.Error("a message that is all header is not complete")
	}
	if f := submissionFields(h, "a@a.example", "q1", "mx.example", time.Unix(0, 0)); f != "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n" {
		t.Errorf("submissionFields = %q", f)
	}
	h, _ = scanHeader(strings.NewReader("Subject: none\r\n\r\n"))
	if f := submissionFields(h, "a@a.example", "q1", "mx.example", time.Unix(0, 0).UTC()); !strings.Contains(f, "Message-ID: <q1@mx.example>\r\n") || !strings.HasPrefix(f, "From: <a@a.example>\r\n") {
		t.Errorf("submissionFields = %q", f)
	}
}

func FuzzScanHeader(f *testing.F) {
	f.Add("From: a@b.example\r\nSubject: hi\r\n\r\nbody")
	f.Add("Subject: =?UTF-8?B?w7w=?=\r\n =?ISO-8859-1?Q?a?=\r\n\r\n")
	f.Add("Received: x\r\n\tfolded\r\n\r\n")
	f.Add("\r\n")
	f.Add(":\r\n \r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		h, err := scanHeader(strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if len([]rune(h.Subject)) > 200 || len([]rune(h.From)) > 200 {
			t.Fatalf("unbounded field: %+v", h)
		}
		if h.Received > strings.Count(msg, ":") {
			t.Fatalf("counted %d Received fields in %q", h.Received, msg)
		}
	})
}

// TestScanHeaderManyFoldedLines: a header of many continuation lines keeps
// only a bounded part of From and Subject. (It once cost seconds per
// message; BenchmarkScanHeaderFolded measures it.)
func TestScanHeaderManyFoldedLines(t *testing.T) {
	h, err := scanHeader(strings.NewReader(foldedHeader))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Subject, "start x x") || len([]rune(h.Subject)) > 200 {
		t.Errorf("subject %q", h.Subject)
	}
}

var foldedHeader = "Subject: start\r\n" + strings.Repeat(" x\r\n", 60000) + "\r\nbody"

func BenchmarkScanHeaderFolded(b *testing.B) {
	b.SetBytes(int64(len(foldedHeader)))
	for b.Loop() {
		scanHeader(strings.NewReader(foldedHeader))
	}
}

func TestScanHeaderFolds(t *testing.T) {
	h, err := scanHeader(strings.NewReader("X: a\r\n b\r\n c\r\nY: d\r\n e\r\n\r\nbody\r\n"))
	if err != nil || h.MaxFolds != 2 || h.Lines != 6 || !h.Complete {
		t.Errorf("scanHeader = %+v, %v; want 2 folds at most, 6 lines", h, err)
	}
}
