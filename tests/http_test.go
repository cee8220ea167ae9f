package tests

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestHTTPHealthAndMetrics: the HTTP listener (TLS, the server's
// certificate) answers /healthz and /readyz, and /metrics in Prometheus's
// text format counts what the server did: a message accepted on port 25, a
// login that failed and one that passed on submission, and the queue (read
// by curl, as a Prometheus scrape would).
func TestHTTPHealthAndMetrics(t *testing.T) {
	curl := requireTool(t, "curl")
	tables := "[tls]\nself_signed = true\n"
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
	if r := c.sendMail("x@remote.example", []string{"alice@example.test"}, "Subject: counted\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("delivery: %q", r)
	}
	sub := s.dialAddr(s.subAddr)
	sub.t = t
	sub.cmd("EHLO sub.example", "250 ")
	sub.startTLSInsecure()
	sub.cmd("EHLO sub.example", "250 ")
	sub.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "wrong-password"), "535 ")
	sub.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 ")
	out, err := get("/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v %s", err, out)
	}
	for _, want := range []string{
		`mailroom_messages_accepted_total{listener="smtp"} 1`,
		`mailroom_logins_total{protocol="submission",result="failed"} 1`,
		`mailroom_logins_total{protocol="submission",result="ok"} 1`,
		`mailroom_queue_entries{state="pending"} 0`,
		`# TYPE go_goroutines gauge`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("/metrics does not say %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^process_resident_memory_bytes \d`).MatchString(out) {
		t.Error("/metrics has no process figures")
	}
	if out, err := exec.Command(curl, "-sS", "-f", "--max-time", "10", "http://"+httpAddr+"/healthz").CombinedOutput(); err == nil {
		t.Errorf("plain HTTP was answered: %q", out)
	}
}
