package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/webhook"
)

// hookReceiver is a webhook receiver of the test's own: it checks each
// post's signature with the secret it is given, answers 503 while
// refusing is set, and keeps what it took.
type hookReceiver struct {
	t      *testing.T
	url    string
	mu     sync.Mutex
	secret string
	refuse bool
	posts  int                        // every request
	bad    int                        // requests whose signature did not verify
	taken  map[string]webhook.Payload // by Mailroom-Delivery, 2xx answered
	dups   int                        // deliveries taken again
}

func startHookReceiver(t *testing.T, ip string) *hookReceiver {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{t: t, url: "http://" + ln.Addr().String() + "/hook", taken: map[string]webhook.Payload{}}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	h.mu.Lock()
	defer h.mu.Unlock()
	h.posts++
	if err := webhook.Verify(r.Header.Get("Mailroom-Signature"), h.secret, body, time.Now(), 5*time.Minute); err != nil {
		h.bad++
		http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
		return
	}
	if h.refuse {
		http.Error(w, "busy\nwith \x1b[31mthings", http.StatusServiceUnavailable)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil || r.Header.Get("Mailroom-Event") != p.Type {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	id := r.Header.Get("Mailroom-Delivery")
	if _, ok := h.taken[id]; ok {
		h.dups++
	}
	h.taken[id] = p
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) set(secret string, refuse bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secret, h.refuse = secret, refuse
}

// of returns the payloads taken of one type, by recipient.
func (h *hookReceiver) of(kind string) map[string]webhook.Payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]webhook.Payload{}
	for _, p := range h.taken {
		if p.Type == kind {
			out[p.Event.Recipient] = p
		}
	}
	return out
}

func (h *hookReceiver) counts() (posts, bad, dups int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.posts, h.bad, h.dups
}

// TestWebhooks: a domain's webhook gets its delivered and bounced events
// and its inbound mail, each post signed (checked by the receiver); a
// receiver that answers 503 gets them again after the retry interval, with
// every attempt on record; the secret rotated, posts carry both
// signatures; events of another domain never reach it.
func TestWebhooks(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	recv := startHookReceiver(t, "127.0.0.121")
	hop := startHop(t, "127.0.0.120", func(_ int, line string) string {
		if strings.HasPrefix(strings.ToLower(line), "rcpt to:<gone@") {
			return "550 5.1.1 No such user here\r\n"
		}
		return hopDefault(line)
	})
	s := relayVia(t, "127.0.0.120", hop, "", "[webhooks]\nretry_intervals = [\"1s\"]\nallow_networks = [\"127.0.0.0/8\"]\n")
	s.start()
	out := s.cli("webhook", "add", recv.url, "--domain", "example.test", "--events", "delivered,bounced,inbound")
	secret := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhook add printed no secret:\n%s", out)
	}
	recv.set(secret, true) // 503 at first
	submit(t, s, []string{"carol@far.test", "gone@far.test"}, "From: alice@example.test\r\nSubject: hooked\r\n\r\nx\r\n")
	until(t, s, "two refused posts", func() bool { p, _, _ := recv.counts(); return p >= 2 })
	recv.set(secret, false)
	until(t, s, "the delivered and bounced events posted", func() bool {
		return len(recv.of("delivered")) == 1 && len(recv.of("bounced")) == 1
	})
	d := recv.of("delivered")["carol@far.test"]
	b := recv.of("bounced")["gone@far.test"]
	if d.Event.Remote != "mx.far.test" || !strings.HasPrefix(d.Event.Detail, "250") || d.Message == nil || d.Message.Subject != "hooked" {
		t.Errorf("the delivered event posted: %+v %+v", d.Event, d.Message)
	}
	if b.Event.Class != "hard" || !strings.Contains(b.Event.Detail, "5.1.1") {
		t.Errorf("the bounced event posted: %+v", b.Event)
	}
	// Every attempt on record: the refused ones with the receiver's answer
	// (made printable), then the taken one.
	var deliveries []struct {
		ID         int64  `json:"id"`
		Kind       string `json:"kind"`
		State      string `json:"state"`
		Attempts   int    `json:"attempts"`
		LastStatus int    `json:"last_status"`
	}
	json.Unmarshal([]byte(s.cli("webhook", "deliveries", "1", "--json")), &deliveries)
	if len(deliveries) != 2 {
		t.Fatalf("deliveries: %+v", deliveries)
	}
	for _, dl := range deliveries {
		if dl.State != "delivered" || dl.Attempts < 2 || dl.LastStatus != 204 {
			t.Errorf("delivery %+v: want delivered after at least one refusal", dl)
		}
	}
	if out := s.cli("webhook", "deliveries", "1"); !strings.Contains(out, "delivered") {
		t.Errorf("deliveries table:\n%s", out)
	}
	if strings.Contains(s.logs(), "\x1b[31m") {
		t.Error("the receiver's answer reached the log with its escape sequence")
	}
	// Inbound mail, posted whole: parsed parts and the raw message.
	in := s.dial()
	in.cmd("EHLO outside.example", "250 ")
	msg := "From: Erin <erin@outside.example>\r\nTo: alice@example.test\r\nSubject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHall=F6chen\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=data.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n"
	if r := in.sendMail("erin@outside.example", []string{"alice@example.test"}, msg); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("inbound: %q", r)
	}
	until(t, s, "the inbound message posted", func() bool { return len(recv.of("inbound")) == 1 })
	ib := recv.of("inbound")["alice@example.test"].Inbound
	if ib == nil || ib.Subject != "Grüße" || ib.Text != "Hallöchen" || len(ib.Attachments) != 1 || ib.Attachments[0].Filename != "data.bin" ||
		ib.Attachments[0].Content != "AAEC" || ib.From != "Erin <erin@outside.example>" {
		t.Errorf("the inbound post: %+v", ib)
	} else if raw, _ := base64.StdEncoding.DecodeString(ib.Raw); !strings.Contains(string(raw), "Hall=F6chen") {
		t.Errorf("the raw message posted: %q", raw)
	}
	// A rotation: both secrets sign until the next one.
	out = s.cli("webhook", "rotate", "1")
	newSecret := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	recv.set(newSecret, false)
	submit(t, s, []string{"dave@far.test"}, "From: alice@example.test\r\nSubject: after rotation\r\n\r\nx\r\n")
	until(t, s, "a post signed with the new secret", func() bool { return len(recv.of("delivered")) == 2 })
	// Another domain's events never reach this webhook.
	s.cli("domain", "add", "other.test")
	s.cli("user", "add", "olga@other.test", "--generate")
	s.cli("user", "send-as", "add", "alice@example.test", "@other.test")
	c := loggedIn(t, s)
	if r := c.sendMail("someone@other.test", []string{"frank@far.test"}, "From: someone@other.test\r\nSubject: other\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission as other.test: %q", r)
	}
	until(t, s, "the other domain's message relayed", func() bool { return hop.count("RCPT TO:<frank@far.test>") == 1 })
	time.Sleep(3 * time.Second) // a count and a send
	if _, ok := recv.of("delivered")["frank@far.test"]; ok {
		t.Error("another domain's event was posted to this domain's webhook")
	}
	if _, bad, dups := recv.counts(); bad != 0 || dups != 0 {
		t.Errorf("%d posts failed their signature check, %d deliveries were taken twice", bad, dups)
	}
}

// TestWebhooksSurviveRestart: deliveries waiting for a receiver that
// refuses them are in the store: the server stopped (SIGTERM) and killed
// (SIGKILL) in the middle of their retries, every one is posted once the
// receiver takes them.
func TestWebhooksSurviveRestart(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	recv := startHookReceiver(t, "127.0.0.123")
	hop := startHop(t, "127.0.0.122", func(_ int, line string) string { return hopDefault(line) })
	// A delivery claimed when the server is killed waits for its claim's
	// lease (4 attempts' timeouts and 10 s: 14 s here) before it is posted.
	s := relayVia(t, "127.0.0.122", hop, "", "[webhooks]\nretry_intervals = [\"1s\"]\ntimeout = \"1s\"\nallow_networks = [\"127.0.0.0/8\"]\n")
	s.start()
	out := s.cli("webhook", "add", recv.url, "--server", "--events", "delivered")
	recv.set(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), true)
	var rcpts []string
	for i := range 6 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@far.test", i))
	}
	submit(t, s, rcpts[:3], "From: alice@example.test\r\nSubject: one\r\n\r\nx\r\n")
	until(t, s, "posts refused", func() bool { p, _, _ := recv.counts(); return p >= 3 })
	s.stop()
	s.start()
	submit(t, s, rcpts[3:], "From: alice@example.test\r\nSubject: two\r\n\r\nx\r\n")
	until(t, s, "more posts refused after the restart", func() bool { p, _, _ := recv.counts(); return p >= 9 })
	s.kill()
	s.start()
	recv.set(recv.secret, false)
	for deadline := time.Now().Add(60 * time.Second); len(recv.of("delivered")) < 6; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the kill, %d of 6 delivered events posted within a minute\n%s", len(recv.of("delivered")), s.logs())
		}
	}
	for _, r := range rcpts {
		if _, ok := recv.of("delivered")[r]; !ok {
			t.Errorf("no post for %s", r)
		}
	}
	if _, bad, dups := recv.counts(); bad != 0 || dups != 0 {
		t.Errorf("%d bad signatures, %d taken twice", bad, dups)
	}
}
