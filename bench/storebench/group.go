package main

import (
	"errors"
	"sync"
	"sync/atomic"
)

// groupCommitter implements group commit: Commit enqueues a message and blocks;
// a single goroutine takes everything pending (up to maxBatch), makes it durable
// with one call to commitFn (one transaction, one WAL/journal sync) and then
// acknowledges every message of the batch.
type groupCommitter struct {
	ch       chan *pending
	commitFn func(batch []*Msg) error
	maxBatch int
	batches  atomic.Int64
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
}

type pending struct {
	m    *Msg
	done chan error
}

var errClosed = errors.New("committer closed")

func newGroupCommitter(maxBatch int, fn func([]*Msg) error) *groupCommitter {
	g := &groupCommitter{ch: make(chan *pending, maxBatch), commitFn: fn, maxBatch: maxBatch}
	g.wg.Add(1)
	go g.loop()
	return g
}

var donePool = sync.Pool{New: func() any { return make(chan error, 1) }}

func (g *groupCommitter) Commit(m *Msg) error {
	p := &pending{m: m, done: donePool.Get().(chan error)}
	g.closeMu.Lock()
	if g.closed {
		g.closeMu.Unlock()
		return errClosed
	}
	g.ch <- p // may block while the channel is full; Close waits for closeMu
	g.closeMu.Unlock()
	err := <-p.done
	donePool.Put(p.done)
	return err
}

func (g *groupCommitter) loop() {
	defer g.wg.Done()
	batch := make([]*pending, 0, g.maxBatch)
	msgs := make([]*Msg, 0, g.maxBatch)
	for first := range g.ch {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < g.maxBatch {
			select {
			case p, ok := <-g.ch:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		msgs = msgs[:0]
		for _, p := range batch {
			msgs = append(msgs, p.m)
		}
		err := g.commitFn(msgs)
		g.batches.Add(1)
		for _, p := range batch {
			p.done <- err
		}
	}
}

// Close stops accepting commits and waits for the committer to finish.
func (g *groupCommitter) Close() {
	g.closeMu.Lock()
	if !g.closed {
		g.closed = true
		close(g.ch)
	}
	g.closeMu.Unlock()
	g.wg.Wait()
}
