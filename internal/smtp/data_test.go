package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// bufSizes are the bufio.Reader sizes ReadData is tested with: the smallest
// bufio allows, a few odd ones so that CRLF and the end marker fall across
// buffer boundaries in every way, and a typical one.
var bufSizes = []int{16, 17, 18, 19, 20, 4096}

// nextCommand follows the data in every test input: after ReadData, the
// reader must be positioned exactly at it.
const nextCommand = "NOOP\r\n"

type dataRun struct {
	out  string
	res  DataResult
	err  error
	rest string // what is left in the reader after ReadData
}

func readData(t *testing.T, in string, bufSize int, limit int64, policy LineEndings) dataRun {
	t.Helper()
	r := bufio.NewReaderSize(strings.NewReader(in), bufSize)
	var w bytes.Buffer
	res, err := ReadData(r, &w, limit, policy)
	rest, rerr := io.ReadAll(r)
	if rerr != nil {
		t.Fatalf("reading what follows the data: %v", rerr)
	}
	return dataRun{out: w.String(), res: res, err: err, rest: string(rest)}
}

// bareEOL reports whether s holds a CR not followed by LF or an LF not
// preceded by CR.
func bareEOL(s string) bool {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n'):
			return true
		case s[i] == '\n' && (i == 0 || s[i-1] != '\r'):
			return true
		}
	}
	return false
}

// dataCases are message data (each ending in the one real end marker) with
// the content ReadData must store under the normalize policy and whether a
// bare CR or LF must be reported.
var dataCases = []struct {
	name string
	in   string
	norm string
	bare bool
	nul  bool // the data holds a NUL: refused whatever the policy
}{
	{name: "a plain message is stored without its end marker",
		in: "Subject: hi\r\n\r\nbody\r\n.\r\n", norm: "Subject: hi\r\n\r\nbody\r\n"},
	{name: "an empty message is just the end marker", in: ".\r\n", norm: ""},
	{name: "a message of one empty line keeps it", in: "\r\n.\r\n", norm: "\r\n"},
	{name: "a leading dot is unstuffed", in: "..leading dot\r\n.\r\n", norm: ".leading dot\r\n"},
	{name: "only the first of several dots is unstuffed", in: "...\r\n.\r\n", norm: "..\r\n"},
	{name: "a stuffed lone dot becomes a lone dot", in: "a\r\n..\r\nb\r\n.\r\n", norm: "a\r\n.\r\nb\r\n"},
	{name: "a dot inside a line is kept", in: "a.b\r\n.a\r\n.\r\n", norm: "a.b\r\na\r\n"},
	{name: "a line longer than the buffer is kept whole",
		in: strings.Repeat("x", 100) + "\r\n.\r\n", norm: strings.Repeat("x", 100) + "\r\n"},
	{name: "a long stuffed line is unstuffed once",
		in: ".." + strings.Repeat("x", 100) + "\r\n.\r\n", norm: "." + strings.Repeat("x", 100) + "\r\n"},
	{name: "a dot at a buffer boundary inside a line is kept",
		in:   strings.Repeat("x", 16) + "..\r\n" + strings.Repeat("y", 17) + ".\r\n.\r\n",
		norm: strings.Repeat("x", 16) + "..\r\n" + strings.Repeat("y", 17) + ".\r\n"},
	{name: "a CRLF split by the buffer is a line ending",
		in: strings.Repeat("x", 15) + "\r\n..y\r\n.\r\n", norm: strings.Repeat("x", 15) + "\r\n.y\r\n"},
	{name: "8-bit octets are kept", in: "caf\xc3\xa9 \xff\r\n.\r\n", norm: "caf\xc3\xa9 \xff\r\n"},
	{name: "a NUL octet is read through and noted", in: "a \x00 b\r\n.\r\n", norm: "a \x00 b\r\n", nul: true},
	{name: "a stuffed line right before the end marker is unstuffed",
		in: "a\r\n.b\r\n.\r\n", norm: "a\r\nb\r\n"},

	// SMTP smuggling: none of these fake end markers may end the data.
	{name: "LF dot LF does not end data", in: "a\n.\nb\r\n.\r\n", norm: "a\r\n.\r\nb\r\n", bare: true},
	{name: "LF dot CRLF does not end data", in: "a\n.\r\nb\r\n.\r\n", norm: "a\r\n.\r\nb\r\n", bare: true},
	{name: "CRLF dot LF does not end data", in: "a\r\n.\nb\r\n.\r\n", norm: "a\r\n\r\nb\r\n", bare: true},
	{name: "CR dot CR does not end data", in: "a\r.\rb\r\n.\r\n", norm: "a\r\n.\r\nb\r\n", bare: true},
	{name: "CR dot CRLF does not end data", in: "a\r.\r\nb\r\n.\r\n", norm: "a\r\n.\r\nb\r\n", bare: true},
	{name: "CRLF dot CR does not end data", in: "a\r\n.\rb\r\n.\r\n", norm: "a\r\n\r\nb\r\n", bare: true},
	{name: "CRLF dot CR CR LF does not end data", in: "a\r\n.\r\r\nb\r\n.\r\n", norm: "a\r\n\r\n\r\nb\r\n", bare: true},
	{name: "CRLF NUL dot CRLF does not end data", in: "a\r\n\x00.\r\nb\r\n.\r\n", norm: "a\r\n\x00.\r\nb\r\n", nul: true},
	{name: "CRLF space dot CRLF does not end data", in: "a\r\n .\r\nb\r\n.\r\n", norm: "a\r\n .\r\nb\r\n"},
	{name: "CRLF dot space CRLF does not end data", in: "a\r\n. \r\nb\r\n.\r\n", norm: "a\r\n \r\nb\r\n"},
	{name: "CRLF dot dot CRLF does not end data", in: "a\r\n..\r\nb\r\n.\r\n", norm: "a\r\n.\r\nb\r\n"},
	{name: "LF dot CRLF at the start does not end data", in: "\n.\r\nb\r\n.\r\n", norm: "\r\n.\r\nb\r\n", bare: true},
	{name: "LF dot LF at the start does not end data", in: "\n.\nb\r\n.\r\n", norm: "\r\n.\r\nb\r\n", bare: true},
	{name: "CR dot CRLF at the start does not end data", in: "\r.\r\nb\r\n.\r\n", norm: "\r\n.\r\nb\r\n", bare: true},
	{name: "dot LF at the start does not end data", in: ".\nb\r\n.\r\n", norm: "\r\nb\r\n", bare: true},
	{name: "dot CR at the start does not end data", in: ".\rb\r\n.\r\n", norm: "\r\nb\r\n", bare: true},
	{name: "a smuggled command after LF dot LF stays content",
		in:   "Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\n.\r\n",
		norm: "Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\n", bare: true},

	// Bare line endings elsewhere.
	{name: "a bare LF in a header is reported", in: "Subject: x\nBcc: y\r\n\r\n.\r\n", norm: "Subject: x\r\nBcc: y\r\n\r\n", bare: true},
	{name: "a bare CR in the body is reported", in: "a\rb\r\n.\r\n", norm: "a\r\nb\r\n", bare: true},
	{name: "CR CR LF is a bare CR and a line ending", in: "a\r\r\n.\r\n", norm: "a\r\n\r\n", bare: true},
	{name: "LF CR LF is a bare LF and a line ending", in: "a\n\r\n.\r\n", norm: "a\r\n\r\n", bare: true},
	{name: "several bare CRs in a row are each reported", in: "a\r\r\rb\r\n.\r\n", norm: "a\r\n\r\n\r\nb\r\n", bare: true},
	{name: "a bare CR at a buffer boundary is reported",
		in: strings.Repeat("x", 15) + "\ry\r\n.\r\n", norm: strings.Repeat("x", 15) + "\r\ny\r\n", bare: true},
	{name: "a bare CR at a buffer boundary before a dot line keeps the dot",
		in: strings.Repeat("x", 15) + "\r.\r\n.\r\n", norm: strings.Repeat("x", 15) + "\r\n.\r\n", bare: true},
}

func TestReadData(t *testing.T) {
	for _, tc := range dataCases {
		for _, size := range bufSizes {
			// Shift the case by whole lines so that every part of it meets
			// every buffer boundary; a CRLF-ended prefix leaves it at the
			// start of a line, exactly as at the start of the data.
			for _, prefix := range []string{"", "p\r\n", "pp\r\n", strings.Repeat("p", 13) + "\r\n", strings.Repeat("p", 30) + "\r\n"} {
				for _, policy := range []LineEndings{NormalizeBareLineEndings, RejectBareLineEndings} {
					name := fmt.Sprintf("%s (buffer %d, prefix %d, policy %d)", tc.name, size, len(prefix), policy)
					t.Run(name, func(t *testing.T) {
						in := prefix + tc.in
						run := readData(t, in+nextCommand, size, 1<<20, policy)
						if run.err != nil {
							t.Fatalf("ReadData(%q) error = %v", in, run.err)
						}
						if run.rest != nextCommand {
							t.Fatalf("ReadData(%q) left %q in the reader, want %q", in, run.rest, nextCommand)
						}
						if _, err := ParseCommand([]byte(run.rest)); err != nil {
							t.Errorf("the command after the data does not parse: %v", err)
						}
						want := prefix + tc.norm
						if run.res.BareEOL != tc.bare || run.res.NUL != tc.nul || !run.res.Complete || run.res.TooBig {
							t.Errorf("ReadData(%q) = %+v, want BareEOL=%v NUL=%v Complete=true TooBig=false", in, run.res, tc.bare, tc.nul)
						}
						if tc.nul && !tc.bare {
							if err := run.res.Err(policy); !errors.Is(err, ErrNULData) {
								t.Errorf("Err() = %v, want %v", err, ErrNULData)
							}
							return
						}
						switch {
						case policy == NormalizeBareLineEndings:
							if run.out != want {
								t.Errorf("ReadData(%q) wrote %q, want %q", in, run.out, want)
							}
							if bareEOL(run.out) {
								t.Errorf("ReadData(%q) wrote %q, which has a bare CR or LF", in, run.out)
							}
							if run.res.Size != int64(len(want)) {
								t.Errorf("Size = %d, want %d", run.res.Size, len(want))
							}
							if err := run.res.Err(policy); err != nil {
								t.Errorf("Err() = %v, want nil", err)
							}
						case tc.bare:
							if err := run.res.Err(policy); !errors.Is(err, ErrBareLineEndingData) {
								t.Errorf("Err() = %v, want %v", err, ErrBareLineEndingData)
							}
						default:
							if run.out != want {
								t.Errorf("ReadData(%q) wrote %q, want %q", in, run.out, want)
							}
						}
					})
				}
			}
		}
	}
}

func TestReadDataSizeLimit(t *testing.T) {
	big := strings.Repeat(strings.Repeat("x", 70)+"\r\n", 100) // 7200 octets
	tests := []struct {
		name    string
		in      string
		limit   int64
		tooBig  bool
		size    int64
		wantOut string // "" to skip the check
	}{
		{name: "a message exactly at the limit is accepted", in: "0123456789\r\n.\r\n", limit: 12, size: 12, wantOut: "0123456789\r\n"},
		{name: "a message one octet over the limit is too big", in: "0123456789\r\n.\r\n", limit: 11, tooBig: true, size: 12, wantOut: "0123456789"},
		{name: "an empty message with a zero limit is accepted", in: ".\r\n", limit: 0, size: 0},
		{name: "a large message over a small limit is too big", in: big + ".\r\n", limit: 1000, tooBig: true, size: int64(len(big))},
		{name: "a fake end marker past the limit does not end the data",
			in: big + "x\n.\nMAIL FROM:<a@b>\r\n.\r\n", limit: 100, tooBig: true, size: int64(len(big + "x\r\n.\r\nMAIL FROM:<a@b>\r\n"))},
		{name: "dot-stuffing is undone before the limit is counted", in: "..........\r\n.\r\n", limit: 11, size: 11, wantOut: ".........\r\n"},
	}
	for _, tt := range tests {
		for _, size := range bufSizes {
			t.Run(fmt.Sprintf("%s (buffer %d)", tt.name, size), func(t *testing.T) {
				run := readData(t, tt.in+nextCommand, size, tt.limit, NormalizeBareLineEndings)
				if run.err != nil {
					t.Fatalf("ReadData error = %v", run.err)
				}
				if run.rest != nextCommand {
					t.Fatalf("ReadData left %q in the reader, want %q: the session would lose sync", run.rest, nextCommand)
				}
				if run.res.TooBig != tt.tooBig || run.res.Size != tt.size || !run.res.Complete {
					t.Errorf("result = %+v, want TooBig=%v Size=%d Complete=true", run.res, tt.tooBig, tt.size)
				}
				if int64(len(run.out)) > tt.limit {
					t.Errorf("wrote %d octets past a limit of %d", len(run.out), tt.limit)
				}
				if tt.wantOut != "" && run.out != tt.wantOut {
					t.Errorf("wrote %q, want %q", run.out, tt.wantOut)
				}
				wantErr := error(nil)
				if tt.tooBig {
					wantErr = ErrMessageTooBig
				}
				for _, policy := range []LineEndings{RejectBareLineEndings, NormalizeBareLineEndings} {
					if err := run.res.Err(policy); !errors.Is(err, wantErr) {
						t.Errorf("Err(%d) = %v, want %v", policy, err, wantErr)
					}
				}
			})
		}
	}
}

func TestReadDataUnexpectedEOF(t *testing.T) {
	tests := []struct{ name, in string }{
		{"no data at all is an unexpected EOF", ""},
		{"a complete line without the end marker is an unexpected EOF", "abc\r\n"},
		{"a partial line is an unexpected EOF", "abc"},
		{"an end marker without its LF is an unexpected EOF", "abc\r\n.\r"},
		{"an end marker without its CRLF is an unexpected EOF", "abc\r\n."},
		{"an LF dot LF marker is an unexpected EOF", "abc\n.\n"},
		{"an LF dot CRLF marker is an unexpected EOF", "abc\n.\r\n"},
		{"a CR dot CR marker is an unexpected EOF", "abc\r.\r"},
		{"a long line cut off is an unexpected EOF", strings.Repeat("x", 100)},
		{"a trailing CR at a buffer boundary is an unexpected EOF", strings.Repeat("x", 15) + "\r"},
	}
	for _, tt := range tests {
		for _, size := range bufSizes {
			t.Run(fmt.Sprintf("%s (buffer %d)", tt.name, size), func(t *testing.T) {
				run := readData(t, tt.in, size, 1<<20, NormalizeBareLineEndings)
				if !errors.Is(run.err, io.ErrUnexpectedEOF) {
					t.Errorf("ReadData(%q) error = %v, want %v", tt.in, run.err, io.ErrUnexpectedEOF)
				}
				if run.res.Complete {
					t.Errorf("ReadData(%q) = %+v, want Complete=false", tt.in, run.res)
				}
			})
		}
	}
}

func TestReadDataReadError(t *testing.T) {
	t.Run("a read error other than EOF is returned as is", func(t *testing.T) {
		boom := errors.New("connection reset")
		r := bufio.NewReaderSize(io.MultiReader(strings.NewReader("abc\r\n"), iotest.ErrReader(boom)), 16)
		res, err := ReadData(r, io.Discard, 1<<20, RejectBareLineEndings)
		if !errors.Is(err, boom) || res.Complete {
			t.Errorf("ReadData = %+v, %v, want %v", res, err, boom)
		}
	})
	t.Run("data arriving one octet at a time is read whole", func(t *testing.T) {
		in := "a\r\n..b\n.\r\nc\r\n.\r\n" + nextCommand
		r := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16)
		var w bytes.Buffer
		res, err := ReadData(r, &w, 1<<20, NormalizeBareLineEndings)
		rest, _ := io.ReadAll(r)
		if err != nil || !res.Complete || !res.BareEOL || w.String() != "a\r\n.b\r\n.\r\nc\r\n" || string(rest) != nextCommand {
			t.Errorf("ReadData = %+v, %v, wrote %q, left %q", res, err, w.String(), rest)
		}
	})
}

// failWriter fails every write.
type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestReadDataWriteError(t *testing.T) {
	t.Run("a write error is returned after reading to the end marker", func(t *testing.T) {
		boom := errors.New("disk full")
		in := "a\r\nb\r\n.\r\n" + nextCommand
		r := bufio.NewReaderSize(strings.NewReader(in), 16)
		res, err := ReadData(r, failWriter{boom}, 1<<20, RejectBareLineEndings)
		rest, _ := io.ReadAll(r)
		if !errors.Is(err, boom) || !res.Complete || string(rest) != nextCommand {
			t.Errorf("ReadData = %+v, %v, left %q; want %v, Complete, %q left", res, err, rest, boom, nextCommand)
		}
	})
}

func TestDataResultErr(t *testing.T) {
	tests := []struct {
		name   string
		res    DataResult
		policy LineEndings
		want   error
	}{
		{"a clean message has no error", DataResult{Complete: true}, RejectBareLineEndings, nil},
		{"a bare line ending is refused under the reject policy", DataResult{BareEOL: true}, RejectBareLineEndings, ErrBareLineEndingData},
		{"a bare line ending is fine under the normalize policy", DataResult{BareEOL: true}, NormalizeBareLineEndings, nil},
		{"a message too big is refused", DataResult{TooBig: true}, NormalizeBareLineEndings, ErrMessageTooBig},
		{"too big wins over a bare line ending", DataResult{TooBig: true, BareEOL: true}, RejectBareLineEndings, ErrMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.res.Err(tt.policy); err != tt.want {
				t.Errorf("Err() = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("the data errors are permanent replies", func(t *testing.T) {
		if ErrBareLineEndingData.Code != 550 || ErrMessageTooBig.Code != 552 {
			t.Errorf("codes = %d, %d, want 550, 552", ErrBareLineEndingData.Code, ErrMessageTooBig.Code)
		}
	})
}

// chunkCases are BDAT message contents with what a ChunkWriter must store
// under the normalize policy.
var chunkCases = []struct {
	name string
	in   string
	norm string
	bare bool
}{
	{name: "a message with CRLF line endings is kept", in: "a\r\nb\r\n", norm: "a\r\nb\r\n"},
	{name: "an empty message stays empty", in: "", norm: ""},
	{name: "a lone CRLF is kept", in: "\r\n", norm: "\r\n"},
	{name: "a missing final CRLF is added", in: "a\r\nb", norm: "a\r\nb\r\n"},
	{name: "dots are not unstuffed in BDAT", in: "..a\r\n.\r\n", norm: "..a\r\n.\r\n"},
	{name: "a bare LF is reported and normalized", in: "a\nb\r\n", norm: "a\r\nb\r\n", bare: true},
	{name: "a bare CR is reported and normalized", in: "a\rb\r\n", norm: "a\r\nb\r\n", bare: true},
	{name: "a final bare CR is reported and normalized", in: "a\r", norm: "a\r\n", bare: true},
	{name: "a final bare LF is normalized without another CRLF", in: "a\n", norm: "a\r\n", bare: true},
	{name: "CR CR LF is a bare CR and a line ending", in: "a\r\r\nb\r\n", norm: "a\r\n\r\nb\r\n", bare: true},
	{name: "LF CR LF is a bare LF and a line ending", in: "a\n\r\nb\r\n", norm: "a\r\n\r\nb\r\n", bare: true},
	{name: "LF CR is a bare LF and a bare CR", in: "a\n\rb", norm: "a\r\n\r\nb\r\n", bare: true},
	{name: "a lone LF is normalized", in: "\n", norm: "\r\n", bare: true},
	{name: "a lone CR is normalized", in: "\r", norm: "\r\n", bare: true},
	{name: "a smuggled end marker is only content", in: "a\n.\nMAIL FROM:<x@y>\r\n", norm: "a\r\n.\r\nMAIL FROM:<x@y>\r\n", bare: true},
}

// splits returns the ways of cutting s into chunks tested for every case:
// whole, in two at every position, in three at every pair of positions, and
// one octet at a time.
func splits(s string) [][]string {
	out := [][]string{{s}}
	for i := 0; i <= len(s); i++ {
		out = append(out, []string{s[:i], s[i:]})
		for j := i; j <= len(s); j++ {
			out = append(out, []string{s[:i], s[i:j], s[j:]})
		}
	}
	var bytewise []string
	for i := 0; i < len(s); i++ {
		bytewise = append(bytewise, s[i:i+1])
	}
	return append(out, bytewise)
}

func writeChunks(t *testing.T, chunks []string, limit int64, policy LineEndings) (string, DataResult) {
	t.Helper()
	var w bytes.Buffer
	cw := NewChunkWriter(&w, limit, policy)
	for _, c := range chunks {
		if n, err := cw.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
	}
	res, err := cw.Close()
	if err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	return w.String(), res
}

func TestChunkWriter(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunks := range splits(tc.in) {
				out, res := writeChunks(t, chunks, 1<<20, NormalizeBareLineEndings)
				if out != tc.norm || res.BareEOL != tc.bare || !res.Complete || res.TooBig || res.Size != int64(len(tc.norm)) {
					t.Fatalf("chunks %q gave %q, %+v; want %q, BareEOL=%v", chunks, out, res, tc.norm, tc.bare)
				}
				if bareEOL(out) {
					t.Fatalf("chunks %q gave %q, which has a bare CR or LF", chunks, out)
				}
				out, res = writeChunks(t, chunks, 1<<20, RejectBareLineEndings)
				if res.BareEOL != tc.bare {
					t.Fatalf("chunks %q under the reject policy: BareEOL = %v, want %v", chunks, res.BareEOL, tc.bare)
				}
				if !tc.bare && out != tc.norm {
					t.Fatalf("chunks %q under the reject policy gave %q, want %q", chunks, out, tc.norm)
				}
			}
		})
	}
}

func TestChunkWriterCRLFAcrossChunks(t *testing.T) {
	t.Run("a CR ending one chunk and an LF starting the next are a proper CRLF", func(t *testing.T) {
		out, res := writeChunks(t, []string{"a\r", "\nb\r", "\n"}, 1<<20, RejectBareLineEndings)
		if res.BareEOL || out != "a\r\nb\r\n" {
			t.Errorf("got %q, %+v", out, res)
		}
	})
	t.Run("an empty last chunk keeps the earlier final CRLF", func(t *testing.T) {
		out, res := writeChunks(t, []string{"a\r\n", ""}, 1<<20, RejectBareLineEndings)
		if res.BareEOL || out != "a\r\n" {
			t.Errorf("got %q, %+v", out, res)
		}
	})
	t.Run("a CR ending one chunk and a CR starting the next are a bare CR", func(t *testing.T) {
		out, res := writeChunks(t, []string{"a\r", "\r\n"}, 1<<20, NormalizeBareLineEndings)
		if !res.BareEOL || out != "a\r\n\r\n" {
			t.Errorf("got %q, %+v", out, res)
		}
	})
}

func TestChunkWriterSizeLimit(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		limit  int64
		tooBig bool
		size   int64
	}{
		{name: "a message at the limit is accepted", chunks: []string{"0123", "4567\r\n"}, limit: 10, size: 10},
		{name: "a message over the limit is too big", chunks: []string{"0123", "4567\r\n", "x"}, limit: 10, tooBig: true, size: 13},
		{name: "the added final CRLF counts", chunks: []string{"0123456789"}, limit: 10, tooBig: true, size: 12},
		{name: "normalized line endings count", chunks: []string{"01234567\n"}, limit: 9, tooBig: true, size: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, res := writeChunks(t, tt.chunks, tt.limit, NormalizeBareLineEndings)
			if res.TooBig != tt.tooBig || res.Size != tt.size {
				t.Errorf("result = %+v, want TooBig=%v Size=%d", res, tt.tooBig, tt.size)
			}
			if int64(len(out)) > tt.limit {
				t.Errorf("wrote %d octets past a limit of %d", len(out), tt.limit)
			}
			if tt.tooBig && !errors.Is(res.Err(NormalizeBareLineEndings), ErrMessageTooBig) {
				t.Errorf("Err() = %v, want %v", res.Err(NormalizeBareLineEndings), ErrMessageTooBig)
			}
		})
	}
}

func TestChunkWriterWriteError(t *testing.T) {
	t.Run("a write error is returned by Write and Close", func(t *testing.T) {
		boom := errors.New("disk full")
		cw := NewChunkWriter(failWriter{boom}, 1<<20, RejectBareLineEndings)
		if _, err := cw.Write([]byte("a\r\n")); !errors.Is(err, boom) {
			t.Errorf("Write error = %v, want %v", err, boom)
		}
		if _, err := cw.Close(); !errors.Is(err, boom) {
			t.Errorf("Close error = %v, want %v", err, boom)
		}
	})
}
