package main

import (
	"github.com/cockroachdb/pebble/v2"
	dto "github.com/prometheus/client_model/go"
)

type pebbleEngine struct {
	db     *pebble.DB
	syncs0 int64
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Errorf(string, ...any)     {}
func (quietLogger) Fatalf(f string, a ...any) { panic(f) }

func openPebble(dir string, size int) (Engine, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	e := &pebbleEngine{db: db}
	e.syncs0 = e.walSyncs()
	return e, nil
}

// Commit writes body and index entry in one batch and waits for the WAL
// fsync; concurrent writers' batches share WAL syncs inside pebble.
func (e *pebbleEngine) Commit(m *Msg) error {
	b := e.db.NewBatch()
	b.Set(append([]byte("b"), seqKey(m.Seq)...), m.Body, nil)
	b.Set(append([]byte("i"), indexKey(m)...), indexVal(m), nil)
	err := b.Commit(pebble.Sync)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return err
}

func (e *pebbleEngine) walSyncs() int64 {
	h := e.db.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return -1
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return -1
	}
	return int64(m.Histogram.GetSampleCount())
}

func (e *pebbleEngine) Close() error { return e.db.Close() }

// Stats reports WAL fsyncs as "batches": each is one group of writers.
func (e *pebbleEngine) Stats() (int64, int64) {
	s := e.walSyncs()
	if s < 0 || e.syncs0 < 0 {
		return -1, -1
	}
	return s - e.syncs0, -1
}
