package mailauth

import (
	"strings"
	"testing"
)

// FuzzSPFSyntax: any record is judged without panicking, and one judged
// valid keeps being valid with its terms' case changed (names are
// case-insensitive).
func FuzzSPFSyntax(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 ip4:192.0.2.0/24 a:x.test/24//64 include:%{d}.x -all",
		"v=spf1 exists:%{l1r-}.%{d2} redirect=x.test", "v=spf1 ip6:2001:db8::/32 ~all", "v=spf1 %{", "v=spf1 a//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, record string) {
		if !isSPF(record) {
			return
		}
		if validSPF(record) && !validSPF("v=spf1"+strings.ToUpper(record[6:])) && !strings.Contains(record, "%") {
			t.Errorf("%q is valid, its upper case is not", record)
		}
	})
}

// FuzzAuthorDomain: any header section gives one lower-case domain or an
// error, never a panic.
func FuzzAuthorDomain(f *testing.F) {
	for _, s := range []string{"From: a@b.test\r\n", "From: A <a@B.Test>\r\nFrom: c@d\r\n", "from:\r\n =?utf-8?q?x?= <a@b>\r\n", "Subject: x\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		d, err := authorDomain(header)
		if err == nil && (d == "" || d != strings.ToLower(d)) {
			t.Errorf("authorDomain(%q) = %q", header, d)
		}
	})
}
