package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/dns/dnstest"
	"mailroom/internal/store/postgres/pgtest"
)

// pgBench is the PostgreSQL store's benchmark (issue 18): Mailroom on the
// embedded store, on PostgreSQL with one node, and with two nodes sharing
// it, one after the other in one run, driven by smtp-source, beside the
// load generator's ceiling (smtp-source into the sink); and, on
// PostgreSQL, what each message costs the database: statements (each a
// round trip: pgx sends one at a time, and the paths measured use no
// batches), transactions, WAL bytes, growth of the database, and CPU time
// of PostgreSQL and of the nodes.
type pgBench struct {
	mailroom, smtpSource, work string
	n, size                    int
	max                        time.Duration
	sink                       *sink
	sinkPort                   int
	dnsAddr                    string
	pg                         *pgtest.Server
	raw                        *os.File // results, a line each (benchkit report's format)
	costs                      []pgCost
}

// pgCost is what one measurement on PostgreSQL cost the database.
type pgCost struct {
	run, figure, server                 string
	statements, xacts, walBytes, growth float64 // per message
	pgCPU, nodeCPU                      float64 // ms per message
	top                                 []topStatement
}

type topStatement struct {
	query           string
	callsPerMessage float64
	meanMS, share   float64
}

func runPGBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pgbench", flag.ContinueOnError)
	b := &pgBench{}
	fs.StringVar(&b.mailroom, "mailroom", "bin/mailroom", "the mailroom binary")
	fs.StringVar(&b.smtpSource, "smtp-source", "/usr/sbin/smtp-source", "Postfix's smtp-source")
	fs.IntVar(&b.n, "n", 20000, "messages per measurement")
	fs.IntVar(&b.size, "size", 10240, "body bytes per message")
	runs := fs.Int("runs", 3, "runs of every measurement")
	concs := fs.String("concs", "10,50", "smtp-source sessions in parallel (split between the nodes)")
	servers := fs.String("servers", "embedded,pg1,pg2", "embedded, pg1 (one node on PostgreSQL), pg2 (two nodes)")
	scenarios := fs.String("scenarios", "accept,spread,relay", "accept (a local mailbox), spread (10 local mailboxes), relay (end to end to the sink)")
	tmp := fs.String("tmp", "/var/tmp", "where data goes (PostgreSQL's cluster included)")
	fs.DurationVar(&b.max, "max", 10*time.Minute, "limit for any one measurement")
	rawPath := fs.String("raw", "", "write raw result lines here")
	costPath := fs.String("costs", "", "write the database costs here (JSON lines)")
	outPath := fs.String("out", "", "write the markdown tables here")
	if err := fs.Parse(args); err != nil || *rawPath == "" || *costPath == "" || *outPath == "" {
		return errUsage
	}
	var err error
	if b.mailroom, err = filepath.Abs(b.mailroom); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp(*tmp, "mailroom-pgbench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)
	os.Chmod(b.work, 0o755)
	if b.raw, err = os.Create(*rawPath); err != nil {
		return err
	}
	defer b.raw.Close()

	// The sink (the relayed domain's MX) and the DNS server naming it.
	b.sink = &sink{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go b.sink.serve(ctx, ln)
	b.sinkPort = ln.Addr().(*net.TCPAddr).Port
	z := dnstest.NewZone()
	for _, rr := range []string{"bench.test. 60 IN MX 10 mx.bench.test.", "mx.bench.test. 60 IN A 127.0.0.1"} {
		if err := z.Add(rr); err != nil {
			return err
		}
	}
	dns, err := dnstest.Serve(z, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer dns.Close()
	b.dnsAddr = dns.Addr

	// PostgreSQL with fsync on, counting statements.
	os.Setenv("TMPDIR", *tmp)
	b.pg, err = pgtest.Start(pgtest.Options{Durable: true, Settings: []string{
		"shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_utility=on", "shared_buffers=512MB"}})
	if err != nil {
		return err
	}
	defer b.pg.Stop()

	for r := 1; r <= *runs; r++ {
		for _, sc := range strings.Split(*scenarios, ",") {
			for _, c := range strings.Split(*concs, ",") {
				conc, err := strconv.Atoi(c)
				if err != nil || conc < 2 {
					return fmt.Errorf("concurrency %q: want a number of at least 2", c)
				}
				b.ceiling(ctx, r, sc, conc)
				for _, srv := range strings.Split(*servers, ",") {
					if err := ctx.Err(); err != nil {
						return err
					}
					b.measure(ctx, r, sc, srv, conc)
				}
			}
		}
	}
	f, err := os.Create(*costPath)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, c := range b.costs {
		enc.Encode(c.export())
	}
	out, err := os.Create(*outPath)
	if err != nil {
		return err
	}
	defer out.Close()
	return b.report(out, *rawPath)
}

// mailboxes is how many users the "spread" scenario delivers to.
const mailboxes = 10

func figure(scenario string, conc int) string {
	switch scenario {
	case "accept":
		return fmt.Sprintf("accept, local mailbox, C=%d", conc)
	case "spread":
		return fmt.Sprintf("accept, %d local mailboxes, C=%d", mailboxes, conc)
	}
	return fmt.Sprintf("end to end, relayed domain, C=%d", conc)
}

// record writes a raw result line (benchkit report's format).
func (b *pgBench) record(run int, fig, server string, value float64, err error, note string) {
	status := "ok"
	if err != nil {
		status, value, note = "fail", 0, err.Error()+"; "+note
	}
	ref := "ceiling, C=" + fig[strings.LastIndex(fig, "=")+1:]
	if server == "reference" {
		ref = "-"
	}
	fmt.Fprintf(b.raw, "%d\t%s\tmsg/s\t%s\t%s\t%.1f\t%s\t%s\n", run, fig, ref, server, value, status, strings.ReplaceAll(note, "\t", " "))
	fmt.Fprintf(os.Stderr, "pgbench: run %d, %s, %s: %.1f msg/s %s %s\n", run, fig, server, value, status, note)
}

// ceiling is smtp-source straight into the sink.
func (b *pgBench) ceiling(ctx context.Context, run int, scenario string, conc int) {
	b.sink.reset()
	t0 := time.Now()
	err := b.load(ctx, []int{b.sinkPort}, conc, "rcpt@bench.test")
	if err == nil {
		err = b.waitSink(b.n, 10*time.Second)
	}
	b.record(run, "ceiling, C="+strconv.Itoa(conc), "reference", float64(b.n)/time.Since(t0).Seconds(), err, "")
}

// load runs smtp-source processes at once, N messages and conc sessions
// shared out between them: as many processes as recipients times ports,
// but never more than conc (each has a session at least), so that one and
// two nodes get the same number of sessions; process i sends to recipient
// i (of those) and port i, in turn.
func (b *pgBench) load(ctx context.Context, ports []int, conc int, rcpts ...string) error {
	ctx, cancel := context.WithTimeout(ctx, b.max)
	defer cancel()
	k := min(len(ports)*len(rcpts), conc)
	errs := make(chan error, k)
	for i := range k {
		port, rcpt := ports[i%len(ports)], rcpts[i%len(rcpts)]
		if len(rcpts) > 1 && len(ports) > 1 && k == len(ports)*len(rcpts) {
			rcpt = rcpts[i/len(ports)] // every pair once
		}
		n, sessions := b.n/k, conc/k
		if i < b.n%k {
			n++
		}
		if i < conc%k {
			sessions++
		}
		cmd := exec.CommandContext(ctx, b.smtpSource, "-4", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n),
			"-l", strconv.Itoa(b.size), "-M", "client.test", "-f", "sender@client.test", "-t", rcpt, fmt.Sprintf("127.0.0.1:%d", port))
		go func() {
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("smtp-source: %v: %s", err, firstLine(out))
			}
			errs <- err
		}()
	}
	var err error
	for range k {
		err = errors.Join(err, <-errs)
	}
	return err
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

// waitSink waits for the sink to have n messages, giving up after
// limit without one arriving.
func (b *pgBench) waitSink(n int, limit time.Duration) error {
	last, since := -1, time.Now()
	for {
		count, _ := b.sink.nth(n)
		if count >= n {
			return nil
		}
		if count != last {
			last, since = count, time.Now()
		}
		if time.Since(since) > limit {
			return fmt.Errorf("the sink got %d of %d messages", count, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// report writes the markdown of the run: throughput beside the ceiling,
// the database's cost per message, and where its time went.
func (b *pgBench) report(w io.Writer, rawPath string) error {
	f, err := os.Open(rawPath)
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := parseResults(f)
	if err != nil {
		return err
	}
	t := summarise(results)
	fmt.Fprintln(w, "| figure | ceiling (smtp-source → sink) | embedded store | PostgreSQL, 1 node | PostgreSQL, 2 nodes | 1 node / embedded | 2 nodes / 1 node | embedded / ceiling | 1 node / ceiling |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, fig := range t.figures {
		ceil := t.cells[[2]string{t.refOf[fig], "reference"}]
		e, p1, p2 := t.cells[[2]string{fig, "mailroom"}], t.cells[[2]string{fig, "mailroom-pg1"}], t.cells[[2]string{fig, "mailroom-pg2"}]
		fmt.Fprintf(w, "| %s, msg/s | %s | %s | %s | %s | %s | %s | %s | %s |\n", fig, ceil.cell(), e.cell(), p1.cell(), p2.cell(),
			ratio(p1, e), ratio(p2, p1), ratio(e, ceil), ratio(p1, ceil))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Per message on PostgreSQL (median of the runs): statements (each a round trip), transactions, WAL written,")
	fmt.Fprintln(w, "growth of the database, CPU time of PostgreSQL (all its processes) and of the Mailroom nodes.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | nodes | statements | transactions | WAL bytes | DB growth bytes | PostgreSQL CPU ms | nodes' CPU ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	type key struct{ fig, server string }
	var order []key
	groups := map[key][]pgCost{}
	for _, c := range b.costs {
		k := key{c.figure, c.server}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	med := func(cs []pgCost, f func(pgCost) float64) float64 {
		s := summary{}
		for _, c := range cs {
			s.values = append(s.values, f(c))
		}
		slices.Sort(s.values)
		return s.median()
	}
	for _, k := range order {
		cs := groups[k]
		fmt.Fprintf(w, "| %s | %s | %.1f | %.2f | %s | %s | %.2f | %.2f |\n", k.fig, strings.TrimPrefix(k.server, "mailroom-pg"),
			med(cs, func(c pgCost) float64 { return c.statements }), med(cs, func(c pgCost) float64 { return c.xacts }),
			thousands(int64(med(cs, func(c pgCost) float64 { return c.walBytes }))), thousands(int64(med(cs, func(c pgCost) float64 { return c.growth }))),
			med(cs, func(c pgCost) float64 { return c.pgCPU }), med(cs, func(c pgCost) float64 { return c.nodeCPU }))
	}
	for _, k := range order {
		cs := groups[k]
		last := cs[len(cs)-1]
		fmt.Fprintf(w, "\nWhere PostgreSQL's time went, %s, %s node(s), run %s (pg_stat_statements, by total execution time):\n\n", k.fig, strings.TrimPrefix(k.server, "mailroom-pg"), last.run)
		fmt.Fprintln(w, "| statement | per message | mean ms | share of the time |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, s := range last.top {
			fmt.Fprintf(w, "| `%s` | %.2f | %.3f | %.0f%% |\n", strings.ReplaceAll(s.query, "|", "\\|"), s.callsPerMessage, s.meanMS, 100*s.share)
		}
	}
	if len(t.failures) > 0 {
		fmt.Fprintln(w, "\nFailed runs:")
		for _, r := range t.failures {
			fmt.Fprintf(w, "- run %s, %s, %s: %s\n", r.run, r.figure, r.server, r.note)
		}
	}
	if len(t.notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, r := range t.notes {
			fmt.Fprintf(w, "- run %s, %s, %s: %s\n", r.run, r.figure, r.server, r.note)
		}
	}
	return nil
}
