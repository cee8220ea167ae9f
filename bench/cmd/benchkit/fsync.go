package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"
)

// runFsync measures what the disk under -dir allows one writer: append a
// block, fsync, repeat; it prints the distribution of the fsync latency.
// It is the reference for the latency figures (bench/README.md).
func runFsync(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fsync", flag.ContinueOnError)
	dir := fs.String("dir", "", "a folder on the filesystem to measure (the data folders')")
	n := fs.Int("n", 500, "appends")
	size := fs.Int("size", 10240, "bytes per append")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *dir == "" || *n < 1 {
		fs.Usage()
		return errUsage
	}
	f, err := os.CreateTemp(*dir, "fsync-probe-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, *size)
	for i := range block {
		block[i] = 'x'
	}
	var took []time.Duration
	start := time.Now()
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		t := time.Now()
		if _, err := f.Write(block); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		took = append(took, time.Since(t))
	}
	total := time.Since(start)
	if len(took) == 0 {
		return ctx.Err()
	}
	slices.Sort(took)
	fmt.Printf("n=%d ops_per_s=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		len(took), float64(len(took))/total.Seconds(), ms(quantile(took, 0.50)),
		ms(quantile(took, 0.90)), ms(quantile(took, 0.99)), ms(took[len(took)-1]))
	return nil
}
