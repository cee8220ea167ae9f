package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// apiClient calls the HTTP API with curl, as the README's examples do.
type apiClient struct {
	t    *testing.T
	curl string
	base string // https://host:port
	key  string
}

// apiReply is what curl got: the status, the header fields (lower-case
// names) and the body.
type apiReply struct {
	status int
	header map[string]string
	body   string
}

func (r apiReply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

// call makes one request; body "" sends none, contentType "" means JSON.
func (c apiClient) call(method, path, body, contentType string, headers ...string) apiReply {
	c.t.Helper()
	dir := c.t.TempDir()
	hdrFile := filepath.Join(dir, "headers")
	args := []string{"-sS", "-k", "--max-time", "30", "-X", method, "-D", hdrFile, "-o", filepath.Join(dir, "body"), "-w", "%{http_code}"}
	if c.key != "" {
		args = append(args, "-H", "Authorization: Bearer "+c.key)
	}
	if body != "" {
		if contentType == "" {
			contentType = "application/json"
		}
		args = append(args, "-H", "Content-Type: "+contentType, "--data-binary", "@-")
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	cmd := exec.Command(c.curl, append(args, c.base+path)...)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("curl %s %s: %v %s", method, path, err, out)
	}
	status, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	b, _ := os.ReadFile(filepath.Join(dir, "body"))
	h, _ := os.ReadFile(hdrFile)
	r := apiReply{status: status, header: map[string]string{}, body: string(b)}
	for _, l := range strings.Split(string(h), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			r.header[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	return r
}

// apiServer is a server with the HTTP listener and a next hop for
// far.test on ip.
func apiServer(t *testing.T, ip, extra string) (*server, *fakeHop, apiClient) {
	t.Helper()
	return apiServerAt(t, ip, freeAddr(t), extra)
}

// apiServerAt is apiServer with the HTTP listener on httpAddr.
func apiServerAt(t *testing.T, ip, httpAddr, extra string) (*server, *fakeHop, apiClient) {
	t.Helper()
	curl := requireTool(t, "curl")
	hop := startHop(t, ip, func(_ int, line string) string { return hopDefault(line) })
	dnsAddr := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {ip},
		"example.org. MX": {"10 mx.far.test."}}).Addr
	tables := fmt.Sprintf("[tls]\nself_signed = true\n[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n%s", dnsAddr, hop.port, extra)
	s := newServer(t, "", tables)
	s.extraListen = fmt.Sprintf("http = [%q]", httpAddr)
	s.writeConfig("", tables)
	s.start()
	return s, hop, apiClient{t: t, curl: curl, base: "https://" + httpAddr}
}

// newKey makes an API key with the CLI and returns its token.
func newKey(t *testing.T, s *server, args ...string) string {
	t.Helper()
	out := s.cli(append([]string{"apikey", "add"}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tok := lines[len(lines)-1]
	if !strings.HasPrefix(tok, "mr_") {
		t.Fatalf("apikey add printed no key:\n%s", out)
	}
	return tok
}

// TestAPISend: a JSON message with text, HTML, an attachment, an inline
// image, a header of its own, tags, metadata and a Bcc is sent through the
// API: a remote recipient's next hop gets it as MIME (no Bcc field), a local
// one finds it in the INBOX, and its events, the message log and the
// statistics show it; then a raw message and a batch (one of whose
// messages is refused for its sender).
func TestAPISend(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	s, hop, api := apiServer(t, "127.0.0.116", "")
	api.key = newKey(t, s, "shop", "--domain", "example.test", "--scope", "send,read")
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nfake image"))
	pdf := base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 fake"))
	msg := `{"from": "Shop <orders@example.test>", "to": ["Carol <carol@far.test>", "bob@example.test"], "bcc": ["dave@far.test"],
		"subject": "Your order 42 ✓", "text": "Thanks for your order.", "html": "<p>Thanks! <img src=\"cid:logo\"></p>",
		"attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "content": "` + pdf + `"}],
		"inline": [{"filename": "logo.png", "content_type": "image/png", "content": "` + png + `", "content_id": "logo"}],
		"headers": {"X-Campaign": "autumn"}, "tags": ["orders", "eu"], "metadata": {"order": "42"}, "stream": "transactional"}`
	r := api.call("POST", "/api/v1/messages", msg, "")
	var sent struct {
		ID        string   `json:"id"`
		MessageID string   `json:"message_id"`
		Accepted  []string `json:"accepted"`
	}
	r.json(t, &sent)
	if r.status != 202 || sent.ID == "" || !strings.HasSuffix(sent.MessageID, "@mx.example.test>") || len(sent.Accepted) != 3 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	until(t, s, "the next hop has the message", func() bool { return len(hop.messagesWith("X-Campaign: autumn")) == 1 })
	got := hop.messagesWith("X-Campaign: autumn")[0]
	for _, want := range []string{"Content-Type: multipart/mixed", "Content-Type: multipart/related", "Content-Type: multipart/alternative",
		"Content-Type: text/plain", "Content-Type: text/html", `filename="invoice.pdf"`, "Content-Id: <logo>", "Message-ID: " + sent.MessageID,
		"Subject: =?UTF-8?", "Received: from [127.0.0.1] (HTTP API, key "} {
		if !strings.Contains(got, want) {
			t.Errorf("the message sent lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(strings.ToLower(got), "\nbcc:") || strings.Contains(got, "dave@far.test>") && strings.Contains(got, "Bcc") {
		t.Errorf("the message shows its Bcc:\n%s", got)
	}
	if n := hop.count("RCPT TO:<dave@far.test>"); n != 1 {
		t.Errorf("the Bcc recipient got %d RCPTs, want 1", n)
	}
	if out := s.cli("mailbox", "list", "bob@example.test"); !strings.Contains(out, "Your order 42") {
		t.Errorf("bob's INBOX:\n%s", out)
	}
	// The message's events, as the API shows them.
	until(t, s, "both remote recipients delivered", func() bool {
		r := api.call("GET", "/api/v1/messages/"+sent.ID, "", "")
		return r.status == 200 && strings.Count(r.body, `"kind":"delivered"`) == 2
	})
	r = api.call("GET", "/api/v1/messages/"+sent.ID, "", "")
	var one struct {
		Message struct {
			Tags     []string          `json:"tags"`
			Metadata map[string]string `json:"metadata"`
			Stream   string            `json:"stream"`
			User     string            `json:"user"`
			Status   string            `json:"status"`
		} `json:"message"`
		Events []struct {
			Kind, Recipient, Remote, Detail string
		} `json:"events"`
	}
	r.json(t, &one)
	if fmt.Sprint(one.Message.Tags) != "[orders eu]" || one.Message.Metadata["order"] != "42" || one.Message.Stream != "transactional" ||
		one.Message.User != "@example.test" || one.Message.Status != "delivered" || len(one.Events) != 5 ||
		strings.Count(r.body, `"kind":"accepted"`) != 2 || strings.Count(r.body, `"kind":"received"`) != 1 || one.Events[4].Kind != "delivered" {
		t.Errorf("the message as read: %s", r.body)
	}
	// The log searched by tag, and the statistics (counted within seconds).
	r = api.call("GET", "/api/v1/messages?tag=orders", "", "")
	if r.status != 200 || strings.Count(r.body, `"queue_id"`) != 1 {
		t.Errorf("search by tag: %d %s", r.status, r.body)
	}
	until(t, s, "the statistics count the deliveries", func() bool {
		r := api.call("GET", "/api/v1/stats?step=minute", "", "")
		return r.status == 200 && strings.Contains(r.body, `"delivered":2`) && strings.Contains(r.body, `"accepted":2`) && strings.Contains(r.body, `"received":1`)
	})
	if r := api.call("GET", "/api/v1/stats?step=hour&tag=eu", "", ""); !strings.Contains(r.body, `"delivered":2`) {
		t.Errorf("stats of a tag: %s", r.body)
	}

	// A raw message, its envelope from its fields, labels from the query.
	raw := "From: orders@example.test\nTo: erin@far.test\nSubject: raw one\n\nHello raw.\n"
	r = api.call("POST", "/api/v1/messages/raw?tag=raw", raw, "message/rfc822")
	if r.status != 202 || !strings.Contains(r.body, `"accepted":["erin@far.test"]`) {
		t.Fatalf("raw: %d %s", r.status, r.body)
	}
	until(t, s, "the raw message at the hop", func() bool { return len(hop.messagesWith("Hello raw.")) == 1 })
	if m := hop.messagesWith("Hello raw.")[0]; !strings.Contains(m, "Subject: raw one\r\n") || !strings.Contains(m, "Message-ID: <") {
		t.Errorf("the raw message as sent (CRLF, a Message-ID added):\n%q", m)
	}

	// A batch: each message its own result, in order.
	batch := `{"messages": [
		{"from": "orders@example.test", "to": ["f1@far.test"], "subject": "b1", "text": "one"},
		{"from": "someone@elsewhere.test", "to": ["f2@far.test"], "subject": "b2", "text": "two"},
		{"from": "orders@example.test", "to": ["f3@far.test"], "subject": "b3", "text": "three"}]}`
	r = api.call("POST", "/api/v1/messages/batch", batch, "")
	var res struct {
		Results []struct {
			ID    string `json:"id"`
			Error *struct{ Code, Message string }
		} `json:"results"`
	}
	r.json(t, &res)
	if r.status != 200 || len(res.Results) != 3 || res.Results[0].ID == "" || res.Results[1].Error == nil || res.Results[1].Error.Code != "sender_refused" || res.Results[2].ID == "" {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
}

// TestAPIIdempotency: a request made again with its Idempotency-Key gets
// the first answer and sends nothing twice; the key with another body is
// refused.
func TestAPIIdempotency(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	s, hop, api := apiServer(t, "127.0.0.117", "")
	api.key = newKey(t, s, "shop", "--domain", "example.test")
	msg := `{"from": "orders@example.test", "to": ["carol@far.test"], "subject": "once", "text": "only once"}`
	first := api.call("POST", "/api/v1/messages", msg, "", "Idempotency-Key: order-7")
	again := api.call("POST", "/api/v1/messages", msg, "", "Idempotency-Key: order-7")
	if first.status != 202 || again.status != 202 || first.body != again.body || again.header["idempotent-replayed"] != "true" {
		t.Fatalf("first %d %s\nagain %d %s %v", first.status, first.body, again.status, again.body, again.header)
	}
	other := api.call("POST", "/api/v1/messages", strings.Replace(msg, "once", "twice", 1), "", "Idempotency-Key: order-7")
	if other.status != 422 || !strings.Contains(other.body, "idempotency_key_reused") {
		t.Errorf("another body with the key: %d %s", other.status, other.body)
	}
	// A new key sends again.
	if r := api.call("POST", "/api/v1/messages", msg, "", "Idempotency-Key: order-8"); r.status != 202 || r.body == first.body {
		t.Errorf("a new key: %d %s", r.status, r.body)
	}
	until(t, s, "two messages at the hop", func() bool { return hop.received() >= 2 })
	if n := len(hop.messagesWith("only once")); n != 2 {
		t.Errorf("the hop got %d messages, want 2 (one per key)", n)
	}
}

// TestAPIErrors: every refusal is JSON with a code and a sentence, and the
// right status: no key, a malformed or unknown key, a missing scope, a
// sender the key may not use, unknown fields, a suppressed recipient; an
// admin key manages the suppression list and the queue; a key's rate is
// held.
func TestAPIErrors(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	s, _, api := apiServer(t, "127.0.0.118", "")
	sender := newKey(t, s, "app", "--user", "alice@example.test", "--scope", "send", "--rate", "12")
	reader := newKey(t, s, "ro", "--domain", "example.test", "--scope", "read")
	admin := newKey(t, s, "ops", "--server", "--scope", "admin,read")
	msg := `{"from": "alice@example.test", "to": ["carol@far.test"], "subject": "s", "text": "t"}`
	for _, c := range []struct {
		name, key, method, path, body string
		status                        int
		code                          string
	}{
		{"no key", "", "POST", "/api/v1/messages", msg, 401, "unauthenticated"},
		{"a malformed key", "nonsense", "POST", "/api/v1/messages", msg, 401, "invalid_key"},
		{"an unknown key", "mr_aaaaaaaa_" + strings.Repeat("a", 52), "POST", "/api/v1/messages", msg, 401, "invalid_key"},
		{"a read key sending", reader, "POST", "/api/v1/messages", msg, 403, "insufficient_scope"},
		{"a send key reading", sender, "GET", "/api/v1/messages", "", 403, "insufficient_scope"},
		{"a domain key managing the queue", reader, "GET", "/api/v1/queue", "", 403, "insufficient_scope"},
		{"another user's address", sender, "POST", "/api/v1/messages", strings.Replace(msg, `"alice@`, `"bob@`, 1), 403, "sender_refused"},
		{"an unknown field", sender, "POST", "/api/v1/messages", strings.Replace(msg, `"text"`, `"txt"`, 1), 400, "invalid_json"},
		{"no body", sender, "POST", "/api/v1/messages", `{"from": "alice@example.test", "to": ["c@far.test"], "subject": "s"}`, 400, "invalid_message"},
		{"a bad tag", sender, "POST", "/api/v1/messages", strings.Replace(msg, `"text"`, `"tags": ["a b"], "text"`, 1), 400, "invalid_tags"},
		{"a header the API writes", sender, "POST", "/api/v1/messages", strings.Replace(msg, `"text"`, `"headers": {"Bcc": "x@y.test"}, "text"`, 1), 400, "invalid_header"},
		{"an unknown endpoint", sender, "GET", "/api/v1/nothing", "", 404, "not_found"},
		{"a message not in the log", reader, "GET", "/api/v1/messages/NOSUCH", "", 404, "not_found"},
	} {
		a := api
		a.key = c.key
		r := a.call(c.method, c.path, c.body, "")
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal([]byte(r.body), &e)
		if r.status != c.status || e.Error.Code != c.code || len(e.Error.Message) < 10 {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}
	// The admin key: suppress an address, see the send refused for it, lift it.
	a := api
	a.key = admin
	if r := a.call("POST", "/api/v1/suppressions", `{"address": "gone@far.test", "reason": "asked to stop"}`, ""); r.status != 201 {
		t.Fatalf("suppress: %d %s", r.status, r.body)
	}
	a.key = sender
	r := a.call("POST", "/api/v1/messages", strings.Replace(msg, "carol@", "gone@", 1), "")
	if r.status != 422 || !strings.Contains(r.body, "recipients_refused") || !strings.Contains(r.body, `"status":"5.1.1"`) {
		t.Errorf("to a suppressed address: %d %s", r.status, r.body)
	}
	a.key = admin
	if r := a.call("GET", "/api/v1/suppressions", "", ""); !strings.Contains(r.body, "gone@far.test") {
		t.Errorf("the suppression list: %s", r.body)
	}
	if r := a.call("DELETE", "/api/v1/suppressions/gone@far.test", "", ""); r.status != 204 {
		t.Errorf("lift: %d %s", r.status, r.body)
	}
	if r := a.call("DELETE", "/api/v1/suppressions/gone@far.test", "", ""); r.status != 404 {
		t.Errorf("lift again: %d %s", r.status, r.body)
	}
	if r := a.call("GET", "/api/v1/queue", "", ""); r.status != 200 || !strings.Contains(r.body, `"recipients"`) {
		t.Errorf("the queue: %d %s", r.status, r.body)
	}
	if r := a.call("POST", "/api/v1/queue/NOSUCH/retry", "", ""); r.status != 404 {
		t.Errorf("retry of nothing: %d %s", r.status, r.body)
	}
	// The sender key's rate: 12 a minute, a burst of 10.
	a.key = sender
	limited := 0
	for range 14 {
		if r := a.call("POST", "/api/v1/messages", `{}`, ""); r.status == 429 && r.header["retry-after"] != "" {
			limited++
		}
	}
	if limited == 0 {
		t.Error("no request over the key's rate was refused with 429")
	}
	// The description of it all.
	a.key = ""
	if r := a.call("GET", "/api/v1/openapi.json", "", ""); r.status != 200 || !strings.Contains(r.body, `"openapi": "3.1.0"`) {
		t.Errorf("openapi.json: %d", r.status)
	}
	// Revoked: refused at once.
	id := strings.Split(strings.TrimPrefix(reader, "mr_"), "_")[0]
	s.cli("apikey", "revoke", id)
	a.key = reader
	if r := a.call("GET", "/api/v1/messages", "", ""); r.status != 401 {
		t.Errorf("a revoked key: %d %s", r.status, r.body)
	}
}

// TestAPIDocsExamples: every curl command of docs/api.md and the README runs
// as printed
// against a server of the test's own (MAILROOM_URL names mail.example.com,
// which curl's own configuration file resolves to the listener and whose
// self-signed certificate it accepts: the commands are not changed) and
// gets a successful JSON answer; the messages reach the next hop.
func TestAPIDocsExamples(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	requireTool(t, "bash")
	s, hop, api := apiServer(t, "127.0.0.119", "")
	s.cli("domain", "add", "example.com")
	key := newKey(t, s, "docs", "--domain", "example.com", "--scope", "send,read")
	home := t.TempDir()
	port := api.base[strings.LastIndex(api.base, ":")+1:]
	curlrc := "insecure\nresolve = \"mail.example.com:" + port + ":127.0.0.1\"\nmax-time = 20\n"
	if err := os.WriteFile(filepath.Join(home, ".curlrc"), []byte(curlrc), 0o600); err != nil {
		t.Fatal(err)
	}
	var commands []string
	for _, file := range []string{"../docs/api.md", "../README.md"} {
		doc, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inSh := false
		for _, line := range strings.Split(string(doc), "\n") {
			switch {
			case strings.HasPrefix(line, "```sh"):
				inSh = true
			case strings.HasPrefix(line, "```"):
				inSh = false
			case inSh && strings.Contains(line, "curl ") && strings.Contains(line, "$MAILROOM_URL"):
				commands = append(commands, line)
			}
		}
	}
	if len(commands) < 5 {
		t.Fatalf("found %d curl examples in docs/api.md", len(commands))
	}
	for _, c := range commands {
		cmd := exec.Command("bash", "-c", c)
		cmd.Env = append(os.Environ(), "HOME="+home, "MAILROOM_URL=https://mail.example.com:"+port, "MAILROOM_KEY="+key)
		out, err := cmd.CombinedOutput()
		var v map[string]any
		if err != nil || json.Unmarshal(out, &v) != nil || v["error"] != nil {
			t.Errorf("%s\n-> %v %s", c, err, out)
		}
	}
	until(t, s, "the examples' four messages at the hop", func() bool { return hop.received() == 4 })
}

// TestAPITracking: an HTML message of a tracked domain sent through the
// API reaches the next hop with its links going through the HTTP listener
// and an image at its end; following them (curl) redirects to the link and
// serves the image, and records clicked and opened events; a link the
// server did not sign is not followed; plain text and untracked domains
// are left alone.
func TestAPITracking(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	httpAddr := freeAddr(t)
	s, hop, api := apiServerAt(t, "127.0.0.125", httpAddr, fmt.Sprintf("[tracking]\nbase_url = \"https://%s\"\ndomains = [\"example.test\"]\n", httpAddr))
	api.key = newKey(t, s, "shop", "--domain", "example.test", "--scope", "send,read")
	r := api.call("POST", "/api/v1/messages", `{"from": "orders@example.test", "to": ["carol@far.test"], "subject": "tracked",
		"text": "See https://shop.example/deal", "html": "<html><body><a href=\"https://shop.example/deal?id=7&amp;x=1\">deal</a></body></html>"}`, "")
	var sent struct{ ID string }
	r.json(t, &sent)
	if r.status != 202 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	until(t, s, "the tracked message at the hop", func() bool { return len(hop.messagesWith("Subject: tracked")) == 1 })
	raw := hop.messagesWith("Subject: tracked")[0]
	// The HTML part is quoted-printable: its soft line breaks and =3D undone.
	body := []byte(strings.NewReplacer("=\r\n", "", "=3D", "=").Replace(raw))
	links := regexp.MustCompile(`https://`+regexp.QuoteMeta(httpAddr)+`/t/[oc]/[A-Za-z0-9_.-]+`).FindAllString(string(body), -1)
	if len(links) != 2 || !strings.Contains(string(body), "See https://shop.example/deal") {
		t.Fatalf("tracking links in the message: %v\n%s", links, body)
	}
	click, open := links[0], links[1]
	if strings.Contains(click, "/t/o/") {
		click, open = open, click
	}
	a := api
	a.key, a.base = "", ""
	if r := a.call("GET", click, "", ""); r.status != 302 || r.header["location"] != "https://shop.example/deal?id=7&x=1" {
		t.Errorf("the click: %d %v", r.status, r.header)
	}
	if r := a.call("GET", open, "", ""); r.status != 200 || r.header["content-type"] != "image/gif" || !strings.HasPrefix(r.body, "GIF89a") {
		t.Errorf("the image: %d %v", r.status, r.header)
	}
	if r := a.call("GET", click[:len(click)-3]+"AAA", "", ""); r.status != 404 {
		t.Errorf("a link changed by hand: %d", r.status)
	}
	r = api.call("GET", "/api/v1/messages/"+sent.ID, "", "")
	if !strings.Contains(r.body, `"kind":"clicked","queue_id":"`+sent.ID+`","recipient":"carol@far.test"`) || !strings.Contains(r.body, `"kind":"opened"`) ||
		!strings.Contains(r.body, `"detail":"https://shop.example/deal?id=7\u0026x=1"`) {
		t.Errorf("the message's events: %s", r.body)
	}
	// Another domain's message is not tracked.
	s.cli("domain", "add", "plain.test")
	plain := newKey(t, s, "plain", "--domain", "plain.test")
	b := api
	b.key = plain
	if r := b.call("POST", "/api/v1/messages", `{"from": "x@plain.test", "to": ["dave@far.test"], "subject": "untracked", "html": "<a href=\"https://shop.example/\">x</a>"}`, ""); r.status != 202 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	until(t, s, "the untracked message at the hop", func() bool { return len(hop.messagesWith("Subject: untracked")) == 1 })
	if m := hop.messagesWith("Subject: untracked")[0]; strings.Contains(m, "/t/") {
		t.Errorf("an untracked domain's message was rewritten:\n%s", m)
	}
}
