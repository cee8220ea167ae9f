package downgrade

import (
	"bytes"
	"crypto/sha256"
	"io"
	"mailroom/internal/mapped"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bigMessage writes a message of about size octets to a file: a text part
// of 8-bit UTF-8, a quoted-printable part with raw 8-bit octets (decoded
// and encoded again) and a binary part, so that every encoder runs long.
func bigMessage(t *testing.T, size int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	line := "Grüße aus Köln, " + strings.Repeat("x", 60) + "\r\n"
	qpLine := "From the caf\xe9 =C3=A9t=C3=A9 soft=\r\n-- broken =\r\n"
	bin := string(bytes.Repeat([]byte{0, 1, 2, 0xff, '\r', '\n', 'a'}, 1000))
	w := func(s string) {
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	w(crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
		"Content-Type: text/plain; charset=utf-8", "", ""))
	for n := 0; n < size/3; n += len(line) {
		w(line)
	}
	w(crlfLines("--b", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "", ""))
	for n := 0; n < size/3; n += len(qpLine) {
		w(qpLine)
	}
	w(crlfLines("", "--b", "Content-Type: application/octet-stream", "", ""))
	for n := 0; n < size/3; n += len(bin) {
		w(bin)
	}
	w(crlfLines("", "--b--", ""))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A message on disk is converted in a few buffers' worth of heap, whatever
// its size (issue 21, finding 3), and to the same octets as when it is read
// whole.
func TestConvertFileHoldsLittle(t *testing.T) {
	const size = 48 << 20
	f := bigMessage(t, size)
	h := sha256.New()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := Convert(h, f); err != nil {
		t.Fatalf("Convert: %v", err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("converting a %d MiB file allocated %d KiB; want at most 4 MiB", size>>20, alloc>>10)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	whole, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Convert(&out, bytes.NewReader(whole)); err != nil {
		t.Fatalf("Convert of the bytes: %v", err)
	}
	if !bytes.Equal(sha(out.Bytes()), h.Sum(nil)) {
		t.Errorf("converting the file and converting its bytes gave different messages")
	}
	checkOutput(t, out.Bytes())
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// A converted file may be read from where its reader stands.
func TestConvertFileFromItsOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "msg")
	in := "Subject: x\r\n\r\nGr\xfc\xdfe\r\n"
	if err := os.WriteFile(path, []byte("skipped"+in), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(int64(len("skipped")), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var fromFile, fromBytes bytes.Buffer
	if err := Convert(&fromFile, f); err != nil {
		t.Fatal(err)
	}
	if err := Convert(&fromBytes, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if fromFile.String() != fromBytes.String() {
		t.Errorf("from the file: %q\nfrom the bytes: %q", fromFile.String(), fromBytes.String())
	}
}

// A file cut short under its mapping is an error, not a crash.
func TestConvertFileCutShort(t *testing.T) {
	f := bigMessage(t, 1<<20)
	data, unmap, err := mapped.File(f)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	err = convertMapped(io.Discard, data)
	if err == nil || !strings.Contains(err.Error(), "changed while it was read") {
		t.Fatalf("converting a file cut short: err = %v, want one saying it changed", err)
	}
}

// Re-encoding quoted-printable in pieces writes what one piece would.
func TestQuotedPrintableInPieces(t *testing.T) {
	g := newGen(3)
	defer func(p int) { qpPiece = p }(qpPiece)
	for i := range 500 {
		in := []byte(g.message(0))
		qpPiece = 32 << 10
		whole, err := convert(t, in)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		for _, p := range []int{9, 10, 17, 100} {
			qpPiece = p
			got, err := convert(t, in)
			if err != nil || !bytes.Equal(got, whole) {
				t.Fatalf("message %d: in pieces of %d: err %v, output differs\n%q\nwant\n%q", i, p, err, clip(got), clip(whole))
			}
		}
	}
}
