// Command storebench measures durable message acceptance ("message commits")
// for candidate embedded storage engines under concurrency.
//
// A message commit stores a body (default 10 KiB) plus a small index record
// (mailbox id, uid, size, date). A writer counts a commit as acknowledged only
// once it is durable (fsynced). Engines that need it use group commit: one
// committer goroutine drains all pending commits, writes them in a single
// transaction and acknowledges them together.
//
// Usage:
//
//	storebench -engine sqlite -writers 10 -n 20000 -size 10240 -dir ./tmp
//	storebench -probe ./tmp/x/mail.db -probe-secs 3   # second-process access test
//	storebench -report results.txt                    # markdown table from RESULT lines
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Msg is one message to accept.
type Msg struct {
	Seq     uint64 // global sequence, unique per run
	Mailbox uint32
	UID     uint32
	Date    int64
	Body    []byte
}

// Engine stores messages durably. Commit must not return before the message
// (body and index record) is durable. Commit is called concurrently.
type Engine interface {
	Commit(m *Msg) error
	Close() error
	// Stats returns the number of durable batches (transactions/WAL syncs
	// initiated by the engine's committer) and the number of fsync-family
	// calls the benchmark code itself issued. Either may be -1 if unknown.
	Stats() (batches, fsyncs int64)
}

type opener func(dir string, size int) (Engine, error)

var engines = map[string]opener{
	"sqlite":       openSQLite(false),
	"sqlite-files": openSQLite(true),
	"bbolt":        openBolt,
	"pebble":       openPebble,
	"files":        openFiles,
	"fsync":        openRawFsync,
}

const numMailboxes = 50

func main() {
	engine := flag.String("engine", "sqlite", "engine: sqlite, sqlite-files, bbolt, pebble, files, fsync")
	writers := flag.Int("writers", 1, "concurrent writers")
	n := flag.Int("n", 20000, "messages to commit")
	size := flag.Int("size", 10240, "body size in bytes")
	dir := flag.String("dir", "./tmp", "parent directory for the data dir (a fresh subdir is created and removed)")
	keep := flag.Bool("keep", false, "keep the data dir after the run")
	maxSecs := flag.Float64("max-secs", 300, "abort the run (with an error) after this many seconds")
	disk := flag.String("disk", "", "block device name in /proc/diskstats for flush/write counters (default: auto from -dir)")
	holdSecs := flag.Float64("hold-secs", 0, "after committing, keep the engine open this many seconds (for -probe tests)")
	probe := flag.String("probe", "", "act as a second process: read and write this SQLite database")
	probeSecs := flag.Float64("probe-secs", 3, "duration of -probe")
	report := flag.String("report", "", "print a markdown table aggregated from RESULT lines in this file")
	flag.Parse()

	switch {
	case *report != "":
		if err := printReport(*report); err != nil {
			fatal(err)
		}
		return
	case *probe != "":
		if err := runProbe(*probe, time.Duration(*probeSecs*float64(time.Second))); err != nil {
			fatal(err)
		}
		return
	}

	open, ok := engines[*engine]
	if !ok {
		fatal(fmt.Errorf("unknown engine %q", *engine))
	}
	if *writers < 1 || *n < 1 || *size < 0 {
		fatal(fmt.Errorf("bad -writers/-n/-size"))
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fatal(err)
	}
	data, err := os.MkdirTemp(*dir, *engine+"-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(data)
	}
	dev := *disk
	if dev == "" {
		dev = deviceFor(data)
	}
	fmt.Fprintf(os.Stderr, "data dir %s (device %q)\n", data, dev)

	e, err := open(data, *size)
	if err != nil {
		fatal(err)
	}
	res, err := run(e, *writers, *n, *size, time.Duration(*maxSecs*float64(time.Second)), dev)
	if err != nil {
		e.Close()
		os.RemoveAll(data)
		fatal(err)
	}
	if *holdSecs > 0 {
		fmt.Fprintf(os.Stderr, "holding engine open for %.1fs\n", *holdSecs)
		time.Sleep(time.Duration(*holdSecs * float64(time.Second)))
	}
	if err := e.Close(); err != nil {
		fatal(err)
	}
	res.Engine = *engine
	fmt.Println(res.Line())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "storebench:", err)
	os.Exit(1)
}

// Result of one run.
type Result struct {
	Engine              string
	Writers, N, Size    int
	Secs                float64
	P50ms, P99ms, Maxms float64
	Batches, Fsyncs     int64
	DevFlushes          int64   // device flush requests during the run, -1 if unknown
	DevKiB              int64   // KiB written to the device during the run, -1 if unknown
	CPUus               float64 // process CPU time (user+sys) per commit, microseconds
}

func (r Result) CPS() float64 { return float64(r.N) / r.Secs }

func (r Result) Line() string {
	return fmt.Sprintf("RESULT engine=%s writers=%d n=%d size=%d secs=%.3f cps=%.1f p50ms=%.3f p99ms=%.3f maxms=%.3f batches=%d fsyncs=%d devflushes=%d devkib=%d cpuus=%.0f",
		r.Engine, r.Writers, r.N, r.Size, r.Secs, r.CPS(), r.P50ms, r.P99ms, r.Maxms, r.Batches, r.Fsyncs, r.DevFlushes, r.DevKiB, r.CPUus)
}

func run(e Engine, writers, n, size int, maxDur time.Duration, dev string) (Result, error) {
	body := make([]byte, size)
	if _, err := rand.Read(body); err != nil { // incompressible, like a worst case
		return Result{}, err
	}
	var uidNext [numMailboxes]atomic.Uint32
	var next atomic.Int64
	var failed atomic.Value
	lat := make([][]time.Duration, writers)
	deadline := time.Now().Add(maxDur)

	flush0, sect0 := diskCounters(dev)
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			own := make([]byte, size)
			copy(own, body)
			l := make([]time.Duration, 0, n/writers+1)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() != nil {
					break
				}
				if i%256 == 0 && time.Now().After(deadline) {
					failed.CompareAndSwap(nil, fmt.Errorf("run exceeded -max-secs=%v", maxDur))
					break
				}
				mb := uint32(i % numMailboxes)
				m := &Msg{
					Seq:     uint64(i) + 1,
					Mailbox: mb + 1,
					UID:     uidNext[mb].Add(1),
					Date:    time.Now().Unix(),
					Body:    own,
				}
				if size >= 8 {
					for k := 0; k < 8; k++ { // make every body distinct
						own[k] = byte(m.Seq >> (8 * k))
					}
				}
				t0 := time.Now()
				if err := e.Commit(m); err != nil {
					failed.CompareAndSwap(nil, err)
					break
				}
				l = append(l, time.Since(t0))
			}
			lat[w] = l
		}(w)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	flush1, sect1 := diskCounters(dev)
	cpu := cpuTime() - cpu0
	if err, _ := failed.Load().(error); err != nil {
		return Result{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) != n {
		return Result{}, fmt.Errorf("acknowledged %d of %d", len(all), n)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		idx := int(p*float64(len(all))+0.5) - 1
		idx = max(0, min(idx, len(all)-1))
		return float64(all[idx]) / 1e6
	}
	b, f := e.Stats()
	r := Result{Writers: writers, N: n, Size: size, Secs: secs,
		P50ms: pct(0.50), P99ms: pct(0.99), Maxms: float64(all[len(all)-1]) / 1e6,
		Batches: b, Fsyncs: f, DevFlushes: -1, DevKiB: -1,
		CPUus: float64(cpu.Microseconds()) / float64(n)}
	if flush0 >= 0 && flush1 >= 0 {
		r.DevFlushes = flush1 - flush0
		r.DevKiB = (sect1 - sect0) / 2
	}
	return r, nil
}

// deviceFor guesses the /proc/diskstats name of the block device holding dir.
func deviceFor(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return ""
	}
	best, bestDev := "", ""
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "/dev/") {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, bestDev = mp, strings.TrimPrefix(f[0], "/dev/")
		}
	}
	return bestDev
}

// diskCounters returns (flush requests completed, sectors written) for dev,
// or -1, -1 if unavailable (needs Linux >= 5.5 for the flush field).
func diskCounters(dev string) (flushes, sectors int64) {
	if dev == "" {
		return -1, -1
	}
	raw, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 20 && f[2] == dev {
			var fl, sw int64
			fmt.Sscan(f[18], &fl)
			fmt.Sscan(f[9], &sw)
			return fl, sw
		}
	}
	return -1, -1
}

// cpuTime returns the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
