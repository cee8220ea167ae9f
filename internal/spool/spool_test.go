package spool

import (
	"bytes"
	"io"
	"os"
	"testing"
)

func TestSpool(t *testing.T) {
	cases := []struct {
		name   string
		writes []int
		limit  int
		onDisk bool
	}{
		{"a small message stays in memory", []int{10, 20}, 64, false},
		{"a message reaching the limit exactly stays in memory", []int{32, 32}, 64, false},
		{"a message past the limit moves to a file", []int{40, 40}, 64, true},
		{"one large write moves to a file", []int{1000}, 64, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := New(dir, c.limit)
			defer s.Close()
			var want bytes.Buffer
			for i, n := range c.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				want.Write(p)
				if _, err := s.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			if s.Size() != int64(want.Len()) {
				t.Errorf("Size = %d, want %d", s.Size(), want.Len())
			}
			if got := s.Bytes() == nil; got != c.onDisk {
				t.Errorf("on disk = %v, want %v", got, c.onDisk)
			}
			for i := 0; i < 2; i++ { // the content can be read more than once
				got, _ := io.ReadAll(s.Reader())
				if !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("read %d: content differs", i)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("the spool file is visible in %s: it should be unlinked at once", dir)
			}
			s.Reset()
			s.Write([]byte("next"))
			if got, _ := io.ReadAll(s.Reader()); string(got) != "next" {
				t.Errorf("after Reset: %q", got)
			}
		})
	}
}

func TestSpoolReportsFileErrors(t *testing.T) {
	s := New("/nonexistent/dir", 8)
	defer s.Close()
	if _, err := s.Write(make([]byte, 100)); err == nil {
		t.Error("a spool that cannot create its file did not report it")
	}
}

func TestSpoolMap(t *testing.T) {
	for _, size := range []int{10, 100 << 10} {
		s := New(t.TempDir(), 1024)
		want := bytes.Repeat([]byte("0123456789"), size/10)
		s.Write(want[:len(want)/2])
		s.Write(want[len(want)/2:])
		b, unmap, err := s.Map()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("size %d: mapped %d octets, not what was written", size, len(b))
		}
		unmap()
		s.Close()
	}
}

// TestSpoolPatch: a patch changes the octets in place, in memory and in a
// file, and one beyond the message is refused.
func TestSpoolPatch(t *testing.T) {
	for _, size := range []int{100, 100 << 10} {
		s := New(t.TempDir(), 1024)
		want := bytes.Repeat([]byte("0123456789"), size/10)
		s.Write(want)
		if err := s.Patch(5, []byte("abc")); err != nil {
			t.Fatal(err)
		}
		copy(want[5:], "abc")
		got, _ := io.ReadAll(s.Reader())
		if !bytes.Equal(got, want) {
			t.Errorf("size %d: after a patch: %.20q", size, got)
		}
		if err := s.Patch(int64(size-1), []byte("xy")); err == nil {
			t.Errorf("size %d: a patch beyond the end was taken", size)
		}
		s.Close()
	}
}
