// Package storecopy moves a store to another backend (mailroom store
// copy): the logical tables of store.Tables are read from one store and
// written into the other in batches, each batch in one transaction with
// the key it reached, so that a copy cut short goes on where it stopped;
// then every table is verified on both sides, by its row count and an
// order-free checksum of its rows.
package storecopy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"mailroom/internal/store"
)

// Destination is a store a copy writes into, and reads back to verify.
type Destination interface {
	store.Importer
	store.Exporter
}

// Options tune a copy; the zero value is the default.
type Options struct {
	// Progress is told the rows copied so far and the rows to copy.
	Progress func(done, total int)
	// Table is told when a table is copied whole (rows written this run).
	Table func(name string, rows int64)
	// BatchRows and BatchBytes bound one transaction (500 rows, 16 MiB).
	BatchRows, BatchBytes int
}

// Summary is what a table holds, on one side: rows and their checksum.
type Summary struct {
	Rows int64
	Sum  [2]uint64
}

func (s Summary) String() string {
	return fmt.Sprintf("%d rows, checksum %016x%016x", s.Rows, s.Sum[0], s.Sum[1])
}

// Result is what a copy did.
type Result struct {
	Resumed bool               // an earlier copy was under way
	Copied  int64              // rows written by this run
	Tables  map[string]Summary // what each table holds, verified on both sides
}

// ErrNotEmpty is the refusal of a destination that holds a store already.
var ErrNotEmpty = errors.New("the destination already holds users or mail: copy only into an empty store (a new database), or finish a copy begun there")

// Copy copies from into to, then verifies the copy.
func Copy(ctx context.Context, from store.Exporter, to Destination, opts Options) (Result, error) {
	if opts.BatchRows <= 0 {
		opts.BatchRows = 500
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 16 << 20
	}
	last, done, takes, err := to.ImportState(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Resumed: len(last) > 0 || len(done) > 0, Tables: map[string]Summary{}}
	if !takes {
		return res, ErrNotEmpty
	}
	total, copied := 0, 0
	for _, t := range store.Tables {
		n, err := from.CountRows(ctx, t)
		if err != nil {
			return res, err
		}
		total += int(n)
		if res.Resumed && t.Name != "sequences" {
			m, err := to.CountRows(ctx, t)
			if err != nil {
				return res, err
			}
			copied += int(m)
		}
	}
	progress := func() {
		if opts.Progress != nil {
			opts.Progress(min(copied, total), total)
		}
	}
	progress()
	for _, t := range store.Tables {
		if done[t.Name] {
			continue
		}
		var (
			batch []store.Row
			size  int
			rows  int64
		)
		flush := func() error {
			if err := to.Import(ctx, t, batch); err != nil {
				return err
			}
			rows += int64(len(batch))
			copied += len(batch)
			batch, size = batch[:0], 0
			progress()
			return nil
		}
		err := from.Export(ctx, t, last[t.Name], func(r store.Row) error {
			batch = append(batch, r)
			size += rowSize(r)
			if len(batch) >= opts.BatchRows || size >= opts.BatchBytes {
				return flush()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = flush()
		}
		if err == nil {
			err = to.ImportDone(ctx, t)
		}
		if err != nil {
			return res, fmt.Errorf("copy %s: %w", t.Name, err)
		}
		res.Copied += rows
		if opts.Table != nil {
			opts.Table(t.Name, rows)
		}
	}
	if err := Verify(ctx, from, to, res.Tables); err != nil {
		return res, err
	}
	return res, to.FinishImport(ctx)
}

// Verify compares every table of a and b, by row count and checksum, and
// fills sums (when not nil) with what they hold.
func Verify(ctx context.Context, a, b store.Exporter, sums map[string]Summary) error {
	var diffs []string
	for _, t := range store.Tables {
		sa, err := Summarize(ctx, a, t)
		if err != nil {
			return err
		}
		sb, err := Summarize(ctx, b, t)
		if err != nil {
			return err
		}
		if sa != sb {
			diffs = append(diffs, fmt.Sprintf("%s: the source has %v, the copy %v", t.Name, sa, sb))
		}
		if sums != nil {
			sums[t.Name] = sa
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the copy differs from the source (was the source's server still running? stop it and copy again into a new database):\n  %s", strings.Join(diffs, "\n  "))
	}
	return nil
}

// Summarize counts a table's rows and adds up their hashes: the sum does
// not depend on the order rows come in, which differs between backends'
// collations.
func Summarize(ctx context.Context, e store.Exporter, t store.Table) (Summary, error) {
	var s Summary
	var buf bytes.Buffer
	err := e.Export(ctx, t, nil, func(r store.Row) error {
		buf.Reset()
		if err := canonical(&buf, t, r); err != nil {
			return err
		}
		h := sha256.Sum256(buf.Bytes())
		s.Rows++
		s.Sum[0] += binary.BigEndian.Uint64(h[:8])
		s.Sum[1] += binary.BigEndian.Uint64(h[8:16])
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("verify %s: %w", t.Name, err)
	}
	return s, nil
}

// canonical writes a row so that equal rows from any backend write the
// same octets: each value with its length; JSON by its value (backends
// keep it apart from its spelling: key order, spaces, escapes).
func canonical(w *bytes.Buffer, t store.Table, r store.Row) error {
	if len(r) != len(t.Columns) {
		return fmt.Errorf("a row of %d values, not %d", len(r), len(t.Columns))
	}
	for i, c := range t.Columns {
		var b []byte
		switch v := r[i].(type) {
		case nil:
		case int64:
			b = binary.BigEndian.AppendUint64(nil, uint64(v))
		case bool:
			if v {
				b = []byte{1}
			} else {
				b = []byte{0}
			}
		case string:
			b = []byte(v)
			if c.Kind == store.KindJSON {
				var err error
				if b, err = canonicalJSON(v); err != nil {
					return fmt.Errorf("column %s: %w", c.Name, err)
				}
			}
		case []byte:
			b = v
		default:
			return fmt.Errorf("column %s holds a %T", c.Name, v)
		}
		w.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		w.Write(b)
	}
	return nil
}

func canonicalJSON(s string) ([]byte, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// rowSize is about what a row weighs in a batch.
func rowSize(r store.Row) int {
	n := 0
	for _, v := range r {
		switch v := v.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		default:
			n += 8
		}
	}
	return n
}
