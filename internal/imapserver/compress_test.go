package imapserver

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// mbsyncFlushes is what mbsync 1.4 (zlib, Z_PARTIAL_FLUSH) sent after
// COMPRESS DEFLATE, one flush a row: NAMESPACE, LIST, SELECT, and six
// pipelined APPENDs in one block with dynamic codes. The empty block each
// flush ends with is cut short: its last bits come with the next flush.
var mbsyncFlushes = []struct{ hex, text string }{
	{"3256f073f4750d0e707476e5e50208", "3 NAMESPACE\r\n"},
	{"2013051fcfe01005252505252d255e2e8000", "4 LIST \"\" \"*\"\r\n"},
	{"32550876f57175060a78fa39f94700450002", "5 SELECT \"INBOX\"\r\n"},
	{"b04a373d0dc2601cc0ef24fd0ecd4e1a8269296e488cd10d5166302ce036122f851664292f712c9b317e77c75430590c" +
		"1ee8e9dfe725f91d9e21bc71dddb47f3a7024f9e3dcef353384044b178a8a848c51069063a37d010ca68ff06f05d27f2" +
		"07901cbe5ed3842bb669c04b86ae0bc1cef88e66a5e05740f236e18a479501f76598d1544004a4a5e23fd5e33bf77eba" +
		"7202ea51b5041290c282bdd57d208dfa13e14e116e4591bf28b3c5966429db36225c27bd3f91da29525b51c5e7966cce" +
		"a738c8fd46a4d6e9a23f11e9149156344999138ddd251a1741232275c2a83f92d649d27e91622d2613ed85f2594bd20e" +
		"247c4cb2044d12cee0ff6cfa912dfedaff0bf8dd6e75dc9eddd9e14888e2e17054695616af15cdabfaf329",
		""},
}

// TestInflaterHandsOverEachFlush: every flush's commands are read before
// the client sends anything more; a client waits for their responses.
func TestInflaterHandsOverEachFlush(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	r := bufio.NewReader(newInflater(pr))
	for i, f := range mbsyncFlushes {
		b, err := hex.DecodeString(f.hex)
		if err != nil {
			t.Fatal(err)
		}
		go pw.Write(b)
		want := f.text
		if want == "" {
			want = "6 APPEND \"INBOX\" (\\Seen) \"03-Feb-2021 04:05:06 +0000\" {83+}\r\n"
		}
		got := make(chan string, 1)
		go func() { l, _ := r.ReadString('\n'); got <- l }()
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("flush %d: read %q, want %q", i, l, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("flush %d: %q was not handed over without more input", i, want)
		}
	}
}

// TestInflaterLongStream: a stream far longer than DEFLATE's 32 KiB window,
// with back-references up to the window's end and flushes at odd places,
// comes out as it went in (the decoder's history starts small and grows to
// the window: third_party/klauspost-compress/README.md).
func TestInflaterLongStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("APPEND INBOX FLAGS Seen mailroom deflate window history literal")
	var in []byte
	for len(in) < 400<<10 {
		switch rng.IntN(8) {
		case 0: // a copy from far back, up to the window's size
			if len(in) > 1000 {
				from := len(in) - 1 - rng.IntN(min(len(in)-1, 32<<10-300))
				in = append(in, in[from:from+rng.IntN(258)+3]...)
			}
		case 1: // bytes that do not compress
			for range rng.IntN(300) {
				in = append(in, byte(rng.Uint32()))
			}
		default:
			in = append(in, words[rng.IntN(len(words))]...)
			in = append(in, ' ')
		}
	}
	var z bytes.Buffer
	w, err := flate.NewWriter(&z, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	for rest := in; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(20<<10))
		w.Write(rest[:n])
		w.Flush()
		rest = rest[n:]
	}
	w.Close()
	out, err := io.ReadAll(newInflater(iotest.HalfReader(&z)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("inflated %d octets differ from the %d deflated", len(out), len(in))
	}
}
