package main

import (
	"encoding/binary"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	boltBodies = []byte("bodies")
	boltIndex  = []byte("index")
)

type boltEngine struct {
	db *bolt.DB
	g  *groupCommitter
}

func openBolt(dir string, size int) (Engine, error) {
	db, err := bolt.Open(filepath.Join(dir, "mail.bolt"), 0o600, &bolt.Options{Timeout: time.Second, NoSync: false})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(boltBodies); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(boltIndex)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	e := &boltEngine{db: db}
	e.g = newGroupCommitter(1024, e.commitBatch)
	return e, nil
}

func (e *boltEngine) Commit(m *Msg) error { return e.g.Commit(m) }

// commitBatch writes the whole batch in one read-write transaction; bbolt
// fdatasyncs the data pages and then the meta page on commit.
func (e *boltEngine) commitBatch(batch []*Msg) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		bodies, index := tx.Bucket(boltBodies), tx.Bucket(boltIndex)
		for _, m := range batch {
			if err := bodies.Put(seqKey(m.Seq), m.Body); err != nil {
				return err
			}
			if err := index.Put(indexKey(m), indexVal(m)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *boltEngine) Close() error {
	e.g.Close()
	return e.db.Close()
}

func (e *boltEngine) Stats() (int64, int64) { return e.g.batches.Load(), -1 }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func indexKey(m *Msg) []byte {
	k := binary.BigEndian.AppendUint32(nil, m.Mailbox)
	return binary.BigEndian.AppendUint32(k, m.UID)
}

func indexVal(m *Msg) []byte {
	v := binary.BigEndian.AppendUint64(nil, m.Seq) // body key
	v = binary.BigEndian.AppendUint64(v, uint64(len(m.Body)))
	return binary.BigEndian.AppendUint64(v, uint64(m.Date))
}
