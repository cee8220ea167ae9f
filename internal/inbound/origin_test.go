package inbound

import (
	"io"
	"strings"
	"testing"

	"mailroom/internal/spool"
)

func TestObscureClaims(t *testing.T) {
	msg := "Received: from x\r\n" +
		"Authentication-Results: MX.Here.Test; dkim=pass\r\n" +
		"authentication-results:\r\n mx.here.test 1; spf=pass\r\n" +
		"Authentication-Results: mx.here.test.elsewhere; spf=pass\r\n" +
		"Authentication-Results: (a comment) mx.here.test; dkim=pass\r\n" +
		"Authentication-Results: other.test; dkim=pass\r\n" +
		"Subject: x\r\n\r\n" +
		"Authentication-Results: mx.here.test; in the body\r\n"
	sp := spool.New(t.TempDir(), 0)
	sp.Write([]byte(msg))
	if err := obscureClaims(sp, "mx.here.test"); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(sp.Reader())
	want := strings.NewReplacer("Authentication-Results: MX.Here.Test", claimedName+": MX.Here.Test",
		"Authentication-Results: (a comment)", claimedName+": (a comment)",
		"authentication-results:\r\n mx.here.test 1", claimedName+":\r\n mx.here.test 1").Replace(msg)
	if string(got) != want {
		t.Errorf("obscureClaims:\n%s\nwant\n%s", got, want)
	}
}

// FuzzObscureClaims: any message keeps its length, and only field names
// change.
func FuzzObscureClaims(f *testing.F) {
	f.Add("Authentication-Results: mx.here.test; x\r\n\r\nbody")
	f.Add("Authentication-Results:\r\n\tmx.here.test\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		sp := spool.New(t.TempDir(), 0)
		sp.Write([]byte(msg))
		if err := obscureClaims(sp, "mx.here.test"); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(sp.Reader())
		if len(got) != len(msg) {
			t.Fatalf("length changed: %d -> %d", len(msg), len(got))
		}
		// Where they differ, a name was renamed, whole.
		for i := 0; i < len(msg); i++ {
			if got[i] == msg[i] {
				continue
			}
			start := strings.LastIndex(string(got[:i+1]), claimedName[:1])
			for start >= 0 && !strings.HasPrefix(string(got[start:]), claimedName) {
				start = strings.LastIndex(string(got[:start]), claimedName[:1])
			}
			if start < 0 || i >= start+len(claimedName) || !strings.EqualFold(msg[start:start+len(claimedName)], "Authentication-Results") {
				t.Fatalf("octet %d changed outside a renamed field name", i)
			}
		}
	})
}
