package main

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

// filesEngine: one file per message, fsync(file) + fsync(dir) per message,
// no index. The lower bound of a maildir-like design.
type filesEngine struct {
	dir    string
	d      *os.File
	fsyncs atomic.Int64
}

func openFiles(dir string, size int) (Engine, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	return &filesEngine{dir: dir, d: d}, nil
}

func (e *filesEngine) Commit(m *Msg) error {
	if err := writeFileSync(filepath.Join(e.dir, bodyName(m.Seq)), m.Body); err != nil {
		return err
	}
	if err := e.d.Sync(); err != nil {
		return err
	}
	e.fsyncs.Add(2)
	return nil
}

func (e *filesEngine) Close() error          { return e.d.Close() }
func (e *filesEngine) Stats() (int64, int64) { return -1, e.fsyncs.Load() }

// rawFsync: append size bytes to one file and fdatasync, serialized. The raw
// durable-write rate of the disk for one writer.
type rawFsync struct {
	mu     sync.Mutex
	f      *os.File
	fsyncs atomic.Int64
}

func openRawFsync(dir string, size int) (Engine, error) {
	f, err := os.OpenFile(filepath.Join(dir, "append.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &rawFsync{f: f}, nil
}

func (e *rawFsync) Commit(m *Msg) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.f.Write(m.Body); err != nil {
		return err
	}
	e.fsyncs.Add(1)
	return syscall.Fdatasync(int(e.f.Fd()))
}

func (e *rawFsync) Close() error          { return e.f.Close() }
func (e *rawFsync) Stats() (int64, int64) { return e.fsyncs.Load(), e.fsyncs.Load() }
