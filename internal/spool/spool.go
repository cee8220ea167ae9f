// Package spool holds a message while it is being received: in memory while
// it is small, in a temporary file once it grows, so that a session never
// buffers more than a fixed amount of memory however large the message.
package spool

import (
	"bytes"
	"fmt"
	"io"
	"mailroom/internal/mapped"
	"os"
	"sync"
)

// DefaultMemoryLimit is how much of a message stays in memory before the
// spool moves it to a file.
const DefaultMemoryLimit = 256 << 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Spool is one message being received. It is not safe for concurrent use.
type Spool struct {
	dir      string
	memLimit int
	buf      *bytes.Buffer
	file     *os.File
	size     int64
}

// New returns an empty spool that moves to a file in dir (the system's
// temporary directory when empty) past memLimit octets.
func New(dir string, memLimit int) *Spool {
	if memLimit <= 0 {
		memLimit = DefaultMemoryLimit
	}
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return &Spool{dir: dir, memLimit: memLimit, buf: b}
}

// Write appends p to the message.
func (s *Spool) Write(p []byte) (int, error) {
	if s.file == nil && s.buf.Len()+len(p) > s.memLimit {
		f, err := os.CreateTemp(s.dir, "spool-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		_ = os.Remove(f.Name()) // unlinked: nothing to clean up after a crash
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.file = f
		s.releaseBuf()
	}
	s.size += int64(len(p))
	if s.file != nil {
		n, err := s.file.Write(p)
		if err != nil {
			err = fmt.Errorf("spool: %w", err)
		}
		return n, err
	}
	return s.buf.Write(p)
}

// Size is the number of octets written.
func (s *Spool) Size() int64 { return s.size }

// Bytes returns the content when it is held in memory, else nil.
func (s *Spool) Bytes() []byte {
	if s.file != nil || s.buf == nil {
		return nil
	}
	return s.buf.Bytes()
}

// Reader returns a reader over the whole content from the start.
func (s *Spool) Reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.Bytes())
}

// Patch overwrites octets at off with b, within what was written: for
// a change that keeps the message's length (a header field renamed).
func (s *Spool) Patch(off int64, b []byte) error {
	if off < 0 || off+int64(len(b)) > s.size {
		return fmt.Errorf("spool: patch of %d octets at %d beyond the message's %d", len(b), off, s.size)
	}
	if s.file != nil {
		if _, err := s.file.WriteAt(b, off); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		return nil
	}
	copy(s.buf.Bytes()[off:], b)
	return nil
}

// Reset empties the spool for the next message.
func (s *Spool) Reset() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	if s.buf == nil {
		s.buf = bufPool.Get().(*bytes.Buffer)
	}
	s.buf.Reset()
	s.size = 0
}

// Close releases the spool's memory and file.
func (s *Spool) Close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.releaseBuf()
}

func (s *Spool) releaseBuf() {
	if s.buf != nil {
		if s.buf.Cap() <= 4*s.memLimit {
			bufPool.Put(s.buf)
		}
		s.buf = nil
	}
}

// Map returns the whole content as one slice: the buffer when it is in
// memory, else the file mapped read-only (package mapped), with the function
// that releases it. Writes must not follow until it is released.
func (s *Spool) Map() ([]byte, func(), error) {
	if s.file == nil {
		return s.Bytes(), func() {}, nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	b, unmap, err := mapped.File(s.file)
	if _, serr := s.file.Seek(0, io.SeekEnd); err == nil && serr != nil {
		unmap()
		return nil, nil, fmt.Errorf("spool: %w", serr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	return b, unmap, nil
}
