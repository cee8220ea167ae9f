package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// journal is the durable sink's storage: what a durable SMTP server must
// do at least. Each message (its envelope and data) goes into one file
// after the ones before it; a single writer takes whatever messages are
// waiting, writes them with one write and one fsync, and only then lets
// their sessions answer 250 (group commit). Nothing acknowledged is
// overwritten. With prealloc, the file is first written with zeros up to
// that size and fsynced, so that the messages overwrite blocks already
// allocated (no size change per fsync), as a WAL that is reused after a
// checkpoint does: the best case for a durable server. Past that size it
// grows.
type journal struct {
	f    *os.File
	off  int64
	reqs chan journalReq
	buf  []byte
}

type journalReq struct {
	data []byte
	done chan error
}

func openJournal(dir string, prealloc int64) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, "sink-journal"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("durable sink: %w", err)
	}
	if err := zeroFill(f, prealloc); err != nil {
		f.Close()
		return nil, fmt.Errorf("durable sink: preallocate %d bytes: %w", prealloc, err)
	}
	// The new file's name must be durable too.
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("durable sink: fsync %s: %w", dir, err)
	}
	j := &journal{f: f, reqs: make(chan journalReq, 1024)}
	go j.writer()
	return j, nil
}

// zeroFill writes size zero bytes to f and fsyncs it.
func zeroFill(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk[:min(int64(len(chunk)), size-off)], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// store returns once data is on stable storage.
func (j *journal) store(data []byte, done chan error) error {
	j.reqs <- journalReq{data: data, done: done}
	return <-done
}

func (j *journal) writer() {
	var batch []journalReq
	for req := range j.reqs {
		batch = append(batch[:0], req)
	drain:
		for {
			select {
			case r := <-j.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		j.buf = j.buf[:0]
		for _, r := range batch {
			j.buf = append(j.buf, r.data...)
		}
		_, err := j.f.WriteAt(j.buf, j.off)
		if err == nil {
			err = j.f.Sync()
		}
		j.off += int64(len(j.buf))
		for _, r := range batch {
			r.done <- err
		}
	}
}
