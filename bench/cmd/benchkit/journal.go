package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// journal is the durable sink's storage: the least a durable SMTP server
// must do. Each message's data is appended to one file; a single writer
// takes whatever messages are waiting, writes them with one write and one
// fsync, and only then lets their sessions answer 250 (group commit). The
// file starts over at offset 0 once it passes journalWrap, as a WAL does
// after a checkpoint, so runs of any length reuse the same blocks.
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

const journalWrap = 64 << 20

func openJournal(dir string) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, "sink-journal"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("durable sink: %w", err)
	}
	j := &journal{f: f, reqs: make(chan journalReq, 1024)}
	go j.writer()
	return j, nil
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
		if j.off > journalWrap {
			j.off = 0
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
