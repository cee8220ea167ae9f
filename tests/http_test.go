package tests

import (
	"crypto/tls"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// TestHTTPHealthAndMetrics: the HTTP listener (TLS, the server's
// certificate) answers /healthz and /readyz, and /metrics in Prometheus's
// text format counts what the server did: a message accepted on port 25, a
// login that failed and one that passed on submission, and the queue (read
// by curl, as a Prometheus scrape would), a recipient refused, a message
// relayed to a next hop (its destination, how long it took), the checks'
// results, the connections and the store's size.
func TestHTTPHealthAndMetrics(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	curl := requireTool(t, "curl")
	hop := startHop(t, "127.0.0.114", func(_ int, line string) string { return hopDefault(line) })
	dnsAddr := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {"127.0.0.114"}}).Addr
	tables := fmt.Sprintf("[tls]\nself_signed = true\n[dns]\nresolver = %q\n[outbound]\nport = %d\n[http]\nmax_connections_per_client = 3\n", dnsAddr, hop.port)
	s := newServer(t, "", tables)
	httpAddr := freeAddr(t)
	s.extraListen = fmt.Sprintf("http = [%q]", httpAddr)
	s.writeConfig("", tables)
	s.start()
	get := func(path string) (string, error) {
		out, err := exec.Command(curl, "-sS", "-f", "-k", "--max-time", "10", "https://"+httpAddr+path).CombinedOutput()
		return string(out), err
	}
	if out, err := get("/healthz"); err != nil || out != "ok\n" {
		t.Errorf("/healthz: %v %q", err, out)
	}
	if out, err := get("/readyz"); err != nil || out != "ready\n" {
		t.Errorf("/readyz: %v %q", err, out)
	}
	c := s.dial()
	c.cmd("EHLO metrics.example", "250 ")
	if r := c.sendMail("x@remote.example", []string{"alice@example.test"}, "From: x@remote.example\r\nSubject: counted\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("delivery: %q", r)
	}
	c.cmd("MAIL FROM:<x@remote.example>", "250 ")
	c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1 ")
	c.cmd("RSET", "250 ")
	sub := s.dialAddr(s.subAddr)
	sub.t = t
	sub.cmd("EHLO sub.example", "250 ")
	sub.startTLSInsecure()
	sub.cmd("EHLO sub.example", "250 ")
	sub.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "wrong-password"), "535 ")
	sub.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 ")
	if r := sub.sendMail("alice@example.test", []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: relayed\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	var out string
	until(t, s, "the relayed message counted as delivered", func() bool {
		out, _ = get("/metrics")
		return strings.Contains(out, `mailroom_deliveries_total{destination="far.test",result="delivered"} 1`)
	})
	for _, want := range []string{
		`mailroom_messages_accepted_total{listener="smtp"} 1`,
		`mailroom_logins_total{protocol="submission",result="failed"} 1`,
		`mailroom_logins_total{protocol="submission",result="ok"} 1`,
		`mailroom_queue_entries{state="pending"} 0`,
		`mailroom_queue_oldest_seconds 0`,
		`mailroom_smtp_refusals_total{listener="smtp",status="5.1.1"} 1`,
		`mailroom_smtp_refusals_total{listener="submission",status="5.7.8"} 1`,
		`mailroom_connections_open{service="submission"} 1`,
		`mailroom_message_accept_seconds_count{listener="smtp"} 1`,
		`mailroom_message_accept_seconds_count{listener="submission"} 1`,
		`mailroom_delivery_attempt_seconds_count{result="delivered"} 1`,
		`mailroom_delivery_delay_seconds_count{result="delivered"} 1`,
		`mailroom_auth_results_total{method="dkim",result="none"} 1`,
		`mailroom_auth_results_total{method="dmarc",result="none"} 1`,
		`mailroom_store_users 2`,
		`# TYPE go_goroutines gauge`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("/metrics does not say %q", want)
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "mailroom_") && strings.HasPrefix(want, l[:strings.IndexAny(l, "{ ")]) {
					t.Log(l)
				}
			}
		}
	}
	if !regexp.MustCompile(`(?m)^process_resident_memory_bytes \d`).MatchString(out) {
		t.Error("/metrics has no process figures")
	}
	if !regexp.MustCompile(`(?m)^mailroom_connections_total\{result="admitted",service="smtp"\} [1-9]`).MatchString(out) {
		t.Error("/metrics does not count the SMTP connections")
	}
	if !regexp.MustCompile(`(?m)^mailroom_store_bytes [1-9]`).MatchString(out) {
		t.Error("/metrics does not size the store")
	}
	if !regexp.MustCompile(`(?m)^mailroom_auth_results_total\{method="spf",result="[a-z]+"\} 1$`).MatchString(out) {
		t.Error("/metrics does not count the SPF result of the message from outside")
	}
	if out, err := exec.Command(curl, "-sS", "-f", "--max-time", "10", "http://"+httpAddr+"/healthz").CombinedOutput(); err == nil {
		t.Errorf("plain HTTP was answered: %q", out)
	}
	// The listener's own connection limits: three held by one client,
	// a fourth is closed at once; given back when they close.
	var held []*tls.Conn
	for range 3 {
		c, err := tls.Dial("tcp", httpAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if out, err := get("/healthz"); err == nil {
		t.Errorf("a fourth connection from one client was served: %q", out)
	}
	for _, c := range held {
		c.Close()
	}
	until(t, s, "the HTTP listener serving again once the connections closed", func() bool {
		out, err := get("/healthz")
		return err == nil && out == "ok\n"
	})
	if out, _ := get("/metrics"); !strings.Contains(out, `mailroom_connections_total{result="too_many_from_client",service="http"} `) {
		t.Error("/metrics does not count the HTTP connection refused")
	}
}
