package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// node is one Mailroom process of a measurement.
type node struct {
	config string
	port   int
	cmd    *exec.Cmd
	done   chan struct{}
}

// startNodes starts one node (embedded, pg1) or two (pg2) sharing url,
// each with its own data directory, after making the local domain and
// user through the first one.
func (b *pgBench) startNodes(ctx context.Context, server, url string) ([]*node, error) {
	k := 1
	if server == "pg2" {
		k = 2
	}
	var nodes []*node
	for i := range k {
		dir := filepath.Join(b.work, fmt.Sprintf("%s-%d", server, i))
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nodes, err
		}
		n := &node{config: filepath.Join(dir, "mailroom.toml"), port: freePort()}
		store := ""
		if url != "" {
			store = fmt.Sprintf("[store]\nurl = %q\n", url)
		}
		cfg := fmt.Sprintf(`# Written by benchkit pgbench; the rest is Mailroom's default.
hostname = "mx%d.mailroom.test"
data_dir = %q
shutdown_timeout = "10s"
[listen]
smtp = ["127.0.0.1:%d"]
submission = ["127.0.0.1:%d"]
[smtp]
trusted_networks = ["127.0.0.0/8"]
max_connections = 2000
max_connections_per_client = 2000
[mailbox]
quota = 0
[dns]
resolver = %q
[outbound]
port = %d
%s`, i, filepath.Join(dir, "data"), n.port, freePort(), b.dnsAddr, b.sinkPort, store)
		if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
			return nodes, err
		}
		if i == 0 {
			if out, err := b.cli(n, "", "domain", "add", "local.test"); err != nil {
				return nodes, fmt.Errorf("domain add: %v: %s", err, out)
			}
			for _, u := range users() {
				if out, err := b.cli(n, "bench-password\n", "user", "add", u, "--password-stdin"); err != nil {
					return nodes, fmt.Errorf("user add: %v: %s", err, out)
				}
			}
		}
		log, err := os.Create(filepath.Join(dir, "serve.log"))
		if err != nil {
			return nodes, err
		}
		n.cmd = exec.Command(b.mailroom, "serve", "--config", n.config)
		n.cmd.Stdout, n.cmd.Stderr = log, log
		// A node dies with benchkit, however benchkit ends.
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := n.cmd.Start(); err != nil {
			log.Close()
			return nodes, err
		}
		log.Close()
		n.done = make(chan struct{})
		go func() { n.cmd.Wait(); close(n.done) }()
		nodes = append(nodes, n)
		if err := waitGreeting(n.port, 30*time.Second); err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			return nodes, fmt.Errorf("node %d did not listen: %v: %s", i, err, lastLine(string(b)))
		}
	}
	return nodes, nil
}

// users are the local users: user@local.test (the accept scenario's), and
// u0..u9 (spread's).
func users() []string {
	u := []string{"user@local.test"}
	for i := range mailboxes {
		u = append(u, fmt.Sprintf("u%d@local.test", i))
	}
	return u
}

func (b *pgBench) cli(n *node, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.max)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.mailroom, append(args, "--config", n.config)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitGreeting waits until an SMTP server on port greets.
func waitGreeting(port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			l, _ := bufio.NewReader(c).ReadString('\n')
			c.Write([]byte("QUIT\r\n"))
			c.Close()
			if strings.HasPrefix(l, "220") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no greeting within %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends a node (SIGTERM, then SIGKILL after 15 s).
func (n *node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// cpuMS is a process's CPU time (user and system) in milliseconds, with
// its reaped children's when children is set.
func cpuMS(pid int, children bool) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from the 3rd (state) on
	ticks := 0.0
	last := 14 // utime (14), stime (15), cutime (16), cstime (17): indexes 11..14 here
	if !children {
		last = 12
	}
	for i := 11; i <= last && i < len(f); i++ {
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks * 10 // USER_HZ is 100 on Linux
}

// clusterCPU is the CPU time of PostgreSQL: its postmaster with the
// children it reaped, and the children still running (backends).
func (b *pgBench) clusterCPU() float64 {
	pid := b.pg.Pid()
	total := cpuMS(pid, true)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			total += cpuMS(child, false)
		}
	}
	return total
}

// dbStats is a snapshot of what the database has done.
type dbStats struct {
	xacts, size int64
	wal         string
	cpu         float64
}

func (b *pgBench) snapshot(ctx context.Context, c *pgx.Conn, db string) (dbStats, error) {
	var s dbStats
	err := c.QueryRow(ctx, `SELECT xact_commit, pg_database_size($1), pg_current_wal_lsn()::text FROM pg_stat_database WHERE datname = $1`, db).
		Scan(&s.xacts, &s.size, &s.wal)
	s.cpu = b.clusterCPU()
	return s, err
}

// measure runs one figure on one server: nodes started afresh on empty
// data, the load, the check that all of it was done, and on PostgreSQL
// what it cost the database.
func (b *pgBench) measure(ctx context.Context, run int, scenario, server string, conc int) {
	fig := figure(scenario, conc)
	name := map[string]string{"embedded": "mailroom", "pg1": "mailroom-pg1", "pg2": "mailroom-pg2"}[server]
	url, db := "", ""
	if server != "embedded" {
		var err error
		if db, err = b.pg.CreateDB(ctx, ""); err != nil {
			b.record(run, fig, name, 0, err, "")
			return
		}
		url = b.pg.URL(db)
		defer b.dropDB(db)
	}
	nodes, err := b.startNodes(ctx, server, url)
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	if err != nil {
		b.record(run, fig, name, 0, err, "")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*b.max) // the load, the checks and the queries
	defer cancel()
	var admin *pgx.Conn
	var before dbStats
	if url != "" {
		if admin, err = pgx.Connect(ctx, url); err == nil {
			defer admin.Close(context.WithoutCancel(ctx))
			_, err = admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()`)
		}
		if err == nil {
			before, err = b.snapshot(ctx, admin, db)
		}
		if err != nil {
			b.record(run, fig, name, 0, err, "")
			return
		}
	}
	nodeCPU0 := 0.0
	var ports []int
	for _, n := range nodes {
		nodeCPU0 += cpuMS(n.cmd.Process.Pid, false)
		ports = append(ports, n.port)
	}
	rcpts := []string{"user@local.test"}
	switch scenario {
	case "relay":
		rcpts = []string{"rcpt@bench.test"}
	case "spread":
		rcpts = users()[1:]
	}
	b.sink.reset()
	t0 := time.Now()
	err = b.load(ctx, ports, conc, rcpts...)
	t1 := time.Now()
	note := ""
	if err == nil && scenario != "relay" {
		err = b.checkStored(nodes[0], rcpts)
	}
	if err == nil && scenario == "relay" {
		if err = b.waitSink(b.n, time.Minute); err == nil {
			_, at := b.sink.nth(b.n)
			t1 = time.Unix(0, at)
			if admin != nil {
				err = waitQueueDone(ctx, admin, time.Minute) // the nodes recorded every delivery
			}
			time.Sleep(time.Second) // messages beyond N (delivered twice) would show now
			if count, _ := b.sink.nth(b.n); count > b.n {
				note = fmt.Sprintf("%d messages at the sink: %d delivered twice", count, count-b.n)
			}
		}
	}
	nodeCPU := -nodeCPU0
	for _, n := range nodes {
		nodeCPU += cpuMS(n.cmd.Process.Pid, false)
		note += fmt.Sprintf("; peak RSS %s", peakRSS(n.cmd.Process.Pid))
	}
	if err == nil && admin != nil {
		err = b.cost(ctx, admin, db, before, run, fig, name, nodeCPU)
	}
	b.record(run, fig, name, float64(b.n)/t1.Sub(t0).Seconds(), err, strings.TrimPrefix(note, "; "))
}

func peakRSS(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return fmt.Sprintf("%d MB", kb/1024)
		}
	}
	return "?"
}

// checkStored counts the messages in the users' mailboxes: all N must be
// there.
func (b *pgBench) checkStored(n *node, users []string) error {
	total := 0
	for _, u := range users {
		out, err := b.cli(n, "", "mailbox", "list", u, "--json")
		if err != nil {
			return fmt.Errorf("mailbox list: %v", err)
		}
		var msgs []json.RawMessage
		if err := json.Unmarshal([]byte(out), &msgs); err != nil {
			return fmt.Errorf("mailbox list: %v", err)
		}
		total += len(msgs)
	}
	if total != b.n {
		return fmt.Errorf("smtp-source done but %d of %d messages stored", total, b.n)
	}
	return nil
}

// waitQueueDone waits until no queue entry waits or is under way.
func waitQueueDone(ctx context.Context, c *pgx.Conn, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM queue WHERE state IN ('pending', 'deferred') OR active`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d queue entries still waiting or under way", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cost reads what the measurement cost the database, per message.
func (b *pgBench) cost(ctx context.Context, c *pgx.Conn, db string, before dbStats, run int, fig, server string, nodeCPU float64) error {
	after, err := b.snapshot(ctx, c, db)
	if err != nil {
		return err
	}
	var walBytes float64
	if err := c.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)`, after.wal, before.wal).Scan(&walBytes); err != nil {
		return err
	}
	n := float64(b.n)
	pc := pgCost{run: strconv.Itoa(run), figure: fig, server: server, xacts: float64(after.xacts-before.xacts) / n,
		walBytes: walBytes / n, growth: float64(after.size-before.size) / n, pgCPU: (after.cpu - before.cpu) / n, nodeCPU: nodeCPU / n}
	rows, err := c.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 90), calls, mean_exec_time, total_exec_time
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) ORDER BY total_exec_time DESC`, db)
	if err != nil {
		return err
	}
	var total float64
	for rows.Next() {
		var t topStatement
		var calls int64
		var sum float64
		if err := rows.Scan(&t.query, &calls, &t.meanMS, &sum); err != nil {
			rows.Close()
			return err
		}
		pc.statements += float64(calls) / n
		t.callsPerMessage, t.share = float64(calls)/n, sum
		total += sum
		pc.top = append(pc.top, t)
	}
	rows.Close()
	for i := range pc.top {
		pc.top[i].share /= max(total, 1e-9)
	}
	pc.top = pc.top[:min(len(pc.top), 8)]
	b.costs = append(b.costs, pc)
	return rows.Err()
}

func (b *pgBench) dropDB(db string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := pgx.Connect(ctx, b.pg.URL("postgres")); err == nil {
		c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		c.Close(ctx)
	}
}

// export is a cost as JSON.
func (c pgCost) export() map[string]any {
	top := []map[string]any{}
	for _, t := range c.top {
		top = append(top, map[string]any{"query": t.query, "calls_per_message": t.callsPerMessage, "mean_ms": t.meanMS, "share": t.share})
	}
	return map[string]any{"run": c.run, "figure": c.figure, "server": c.server, "statements": c.statements, "xacts": c.xacts,
		"wal_bytes": c.walBytes, "growth_bytes": c.growth, "pg_cpu_ms": c.pgCPU, "node_cpu_ms": c.nodeCPU, "top": top}
}
