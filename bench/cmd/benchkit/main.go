// Command benchkit holds the small programs bench/run.sh needs beside
// Postfix's smtp-source: a DNS server with a fixed zone, an SMTP sink that
// stays up and counts what it receives, a latency client, an fsync probe,
// and the report that turns the raw results into a markdown table.
//
// It is a tool for the side-by-side benchmark (bench/README.md), not part of
// Mailroom: nothing under internal/ imports it, and of Mailroom's code it
// imports only the tests' DNS server (internal/dns/dnstest); the sink and
// the other references share no code with what they measure.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: benchkit COMMAND [flags]

  dns      serve a fixed zone over UDP on loopback
  sink     an SMTP sink that counts messages, with an HTTP control port
  latency  send single messages one after another and report p50/p99
  fsync    append blocks to a file with an fsync after each and report p50/p99
  report   turn raw result lines into the markdown table
  imaplogins  repeated IMAP logins over implicit TLS, and their rate
  imapsink    an IMAP server that takes any login: imaplogins' ceiling
  imapload    FETCH, SEARCH, STORE or APPEND from several sessions, or IDLE wake-up latency
  imapbig     the commands a client runs on a very large mailbox, timed
  pop3load    download a whole POP3 maildrop again and again
  pgbench     the embedded store, PostgreSQL with one and two nodes: throughput and the database's cost per message

"benchkit COMMAND -h" lists a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	commands := map[string]func(context.Context, []string) error{
		"dns":        runDNS,
		"sink":       runSink,
		"latency":    runLatency,
		"fsync":      runFsync,
		"report":     runReport,
		"imaplogins": runIMAPLogins,
		"imapsink":   runIMAPSink,
		"imapload":   runIMAPLoad,
		"imapbig":    runIMAPBig,
		"pop3load":   runPOP3Load,
		"pgbench":    runPGBench,
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "benchkit: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "benchkit %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// checkLoopback refuses a listen address that is not a loopback IP: the
// benchmark's servers must never be reachable from the network.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: must be a loopback IP address", addr)
	}
	return nil
}

// writeAddrFile writes addr to path (if path is not empty) through a
// temporary file, so that a reader polling for it never sees half of it.
func writeAddrFile(path, addr string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// errUsage marks a bad command line; the flag package has already said why.
var errUsage = errors.New("bad arguments")
