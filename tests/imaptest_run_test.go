package tests

// The runner of Dovecot's imaptest scripts against the real server: each
// script gets a user of its own, connections in the state it asks for,
// and its command groups sent and checked one by one.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// itTrace prints every line sent and received (IMAPTEST_TRACE=1).
var itTrace = os.Getenv("IMAPTEST_TRACE") != ""

// itMailbox is the test mailbox of every script ($mailbox).
const itMailbox = "imaptest"

// itConn is one connection of a script.
type itConn struct {
	conn   net.Conn
	r      *bufio.Reader
	w      io.Writer     // conn, or a compressor over it
	fw     *flate.Writer // the compressor, flushed after each write
	exists int           // messages this connection knows of (for $N)
}

// write sends b, all of it (flushed through the compressor when on).
func (c *itConn) write(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	if c.fw != nil {
		return c.fw.Flush()
	}
	return nil
}

// deflate compresses the connection both ways after COMPRESS's OK; what
// the reader already holds past the OK is compressed already.
func (c *itConn) deflate() error {
	rest, _ := c.r.Peek(c.r.Buffered())
	c.r = bufio.NewReaderSize(flate.NewReader(io.MultiReader(bytes.NewReader(bytes.Clone(rest)), c.conn)), 64<<10)
	fw, err := flate.NewWriter(c.conn, flate.DefaultCompression)
	if err != nil {
		return err
	}
	c.w, c.fw = fw, fw
	return nil
}

// response is one line from the server, literals in place.
type response struct {
	raw  string
	tag  string // "" for untagged, "+" for a continuation
	args []itArg
}

func (c *itConn) read() (response, error) {
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var raw strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return response{}, fmt.Errorf("reading a reply: %w (after %q)", err, raw.String()+line)
		}
		raw.WriteString(line)
		t := strings.TrimRight(line, "\r\n")
		if strings.HasSuffix(t, "}") {
			if i := strings.LastIndexByte(t, '{'); i >= 0 {
				if n, err := strconv.Atoi(strings.TrimSuffix(t[i+1:len(t)-1], "+")); err == nil {
					buf := make([]byte, n)
					if _, err := ioReadFull(c.r, buf); err != nil {
						return response{}, fmt.Errorf("reading a literal: %w", err)
					}
					raw.Write(buf)
					continue
				}
			}
		}
		break
	}
	s := strings.TrimRight(raw.String(), "\r\n")
	if itTrace {
		fmt.Printf("S: %s\n", s)
	}
	r := response{raw: s}
	first, rest, _ := strings.Cut(s, " ")
	switch first {
	case "*":
		r.tag = ""
	case "+":
		r.tag = "+"
		return r, nil
	default:
		r.tag = first
	}
	args, err := parseITArgs(rest)
	if err != nil {
		return r, err
	}
	r.args = args
	if r.tag == "" && len(args) >= 2 && args[1].kind == 'a' {
		switch strings.ToUpper(args[1].text) {
		case "EXISTS":
			c.exists, _ = strconv.Atoi(args[0].text)
		case "EXPUNGE":
			c.exists--
		}
	}
	return r, nil
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// command sends one tagged command, waiting for "+" at each synchronizing
// literal; untagged replies that come meanwhile go to untagged. It
// returns the tagged reply if the server answered before the end.
func (c *itConn) command(tag, text string, untagged *[]response) (*response, error) {
	line := tag + " " + text
	for {
		i := literalAt(line)
		if itTrace {
			fmt.Printf("C: %s\n", line)
		}
		if i.end < 0 {
			return nil, c.write([]byte(line + "\r\n"))
		}
		if err := c.write([]byte(line[:i.end])); err != nil {
			return nil, err
		}
		for {
			r, err := c.read()
			if err != nil {
				return nil, err
			}
			if r.tag == "+" {
				break
			}
			if r.tag == tag {
				return &r, nil
			}
			*untagged = append(*untagged, r)
		}
		if err := c.write([]byte(line[i.end : i.end+i.n])); err != nil {
			return nil, err
		}
		line = line[i.end+i.n:]
	}
}

type literalPos struct{ end, n int }

// literalAt finds the first synchronizing literal "{n}" CRLF in a command:
// end is past its CRLF, n its length.
func literalAt(s string) literalPos {
	for i := 0; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		j := strings.Index(s[i:], "}\r\n")
		if j < 0 {
			return literalPos{-1, 0}
		}
		n, err := strconv.Atoi(s[i+1 : i+j])
		if err != nil {
			continue
		}
		return literalPos{i + j + 3, n}
	}
	return literalPos{-1, 0}
}

// itMessage is a message of a script's mbox.
type itMessage struct {
	date string // IMAP date-time, or ""
	body string // CRLF line ends
}

// readScriptMbox splits an mbox file into messages.
func readScriptMbox(path string) ([]itMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []itMessage
	var cur *itMessage
	var body []string
	flush := func() {
		if cur != nil {
			cur.body = strings.Join(body, "\r\n") + "\r\n"
			out = append(out, *cur)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if strings.HasPrefix(line, "From ") {
			flush()
			cur, body = &itMessage{date: mboxDate(line)}, nil
			continue
		}
		body = append(body, strings.TrimSuffix(line, "\r"))
	}
	flush()
	return out, nil
}

// mboxDate turns an mbox "From " line's date into an IMAP date-time.
func mboxDate(line string) string {
	f := strings.Fields(line)
	if len(f) < 7 {
		return ""
	}
	s := strings.Join(f[2:], " ")
	for _, layout := range []string{"Mon Jan _2 15:04:05 2006 -0700", "Mon Jan _2 15:04:05 2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Format("02-Jan-2006 15:04:05 -0700")
		}
	}
	return ""
}

// appendText is an APPEND of a message of the mbox with its date.
func appendText(args string, m itMessage) string {
	if m.date != "" {
		args += ` "` + m.date + `"`
	}
	return "APPEND " + args + " {" + strconv.Itoa(len(m.body)) + "}\r\n" + m.body
}

// itRun runs one script; err says why it failed.
type itRun struct {
	t       *testing.T
	s       *server
	sc      *itScript
	user    string
	conns   []*itConn
	m       *itMatcher
	msgs    []itMessage
	nextMsg int
	tagN    int
	// compress: every logged-in connection turns on COMPRESS=DEFLATE
	// (RFC 4978) first, Go's compress/flate on this side.
	compress bool
}

func (r *itRun) dial() (*itConn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.s.imapsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	c := &itConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: conn}
	g, err := c.read()
	if err != nil || g.tag != "" {
		conn.Close()
		return nil, fmt.Errorf("greeting: %v %q", err, g.raw)
	}
	return c, nil
}

// simple runs a setup command and fails unless it is answered OK.
func (r *itRun) simple(c *itConn, text string) ([]response, error) {
	r.tagN++
	tag := "s" + strconv.Itoa(r.tagN)
	var untagged []response
	reply, err := c.command(tag, text, &untagged)
	for err == nil && reply == nil {
		var resp response
		if resp, err = c.read(); err == nil {
			if resp.tag == tag {
				reply = &resp
			} else {
				untagged = append(untagged, resp)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if len(reply.args) == 0 || !strings.EqualFold(reply.args[0].text, "OK") {
		return untagged, fmt.Errorf("setup %q: %s", strings.SplitN(text, "\r\n", 2)[0], reply.raw)
	}
	return untagged, nil
}

// setup brings every connection to the script's starting state.
func (r *itRun) setup() error {
	for i := 0; i < r.sc.connections; i++ {
		c, err := r.dial()
		if err != nil {
			return err
		}
		r.conns = append(r.conns, c)
		if r.sc.state == "nonauth" {
			continue
		}
		if _, err := r.simple(c, "LOGIN "+r.user+" Lantern-quartz-imap-91"); err != nil {
			return err
		}
		if r.compress {
			if _, err := r.simple(c, "COMPRESS DEFLATE"); err != nil {
				return err
			}
			if err := c.deflate(); err != nil {
				return err
			}
		}
	}
	if r.sc.state == "nonauth" || r.sc.state == "auth" {
		return nil
	}
	c := r.conns[0]
	if _, err := r.simple(c, "CREATE "+itMailbox); err != nil {
		return err
	}
	// "messages: N" takes N messages, from the start of the mbox again
	// when it has fewer, as imaptest's mbox source does.
	n := r.sc.messages
	if n < 0 {
		n = len(r.msgs)
	}
	for ; r.nextMsg < n; r.nextMsg++ {
		if _, err := r.simple(c, appendText(itMailbox, r.msgs[r.nextMsg%len(r.msgs)])); err != nil {
			return err
		}
	}
	if r.sc.state == "selected" {
		for _, c := range r.conns {
			if _, err := r.simple(c, "SELECT "+itMailbox); err != nil {
				return err
			}
		}
	}
	return nil
}

// runGroup sends a group's commands and checks the replies.
func (r *itRun) runGroup(g *itGroup) error {
	c := r.conns[g.conn]
	r.m.seqmap = r.m.seqmap[:0]
	for i := 1; i <= c.exists; i++ {
		r.m.seqmap = append(r.m.seqmap, uint32(i))
	}
	type sent struct {
		tag   string
		cmd   *itCommand
		reply *response
	}
	var cmds []*sent
	var untagged []response
	for _, cmd := range g.commands {
		text, ok := r.m.expandCommand(cmd.text)
		if !ok {
			return fmt.Errorf("line %d: a variable of %q is not bound", cmd.line, cmd.text)
		}
		if t, ok := r.appendOf(text); ok {
			text = t
		}
		r.tagN++
		st := &sent{tag: "c" + strconv.Itoa(r.tagN), cmd: cmd}
		reply, err := c.command(st.tag, text, &untagged)
		if err != nil {
			return fmt.Errorf("line %d: %w", cmd.line, err)
		}
		st.reply = reply
		cmds = append(cmds, st)
	}
	for slices.ContainsFunc(cmds, func(s *sent) bool { return s.reply == nil }) {
		resp, err := c.read()
		if err != nil {
			return fmt.Errorf("line %d: %w", g.line, err)
		}
		if resp.tag == "" {
			untagged = append(untagged, resp)
			continue
		}
		for _, s := range cmds {
			if s.tag == resp.tag {
				s.reply = &resp
			}
		}
	}
	// Untagged replies, in the order they came; $tag is the first
	// command's tag.
	r.m.vars["tag"] = cmds[0].tag
	defer delete(r.m.vars, "tag")
	found := make([]bool, len(g.untagged))
	var extra []string
	for _, u := range untagged {
		matched := false
		for i, e := range g.untagged {
			if found[i] {
				continue
			}
			if r.m.matchUntagged(e.args, u.args) {
				if e.existence == '!' {
					return fmt.Errorf("line %d: a reply that must not come came: %s", g.line, clipRaw(u.raw))
				}
				found[i], matched = true, true
				if g.ordered {
					break
				}
				continue
			}
			if g.ordered && e.existence == '*' {
				break
			}
		}
		if !matched {
			extra = append(extra, u.raw)
		}
		if len(u.args) >= 2 && strings.EqualFold(u.args[1].text, "EXPUNGE") {
			seq, _ := strconv.Atoi(u.args[0].text)
			r.expunged(uint32(seq))
		}
	}
	for i, e := range g.untagged {
		if e.existence == '*' && !found[i] {
			return fmt.Errorf("line %d: missing untagged reply %s\n   received: %s", g.line, argsString(e.args), clipRaw(strings.Join(rawOf(untagged), "\n             ")))
		}
	}
	if len(extra) > 0 && !r.sc.ignoreExtras {
		return fmt.Errorf("line %d: unexpected untagged reply %s", g.line, clipRaw(extra[0]))
	}
	for _, s := range cmds {
		if len(s.cmd.reply) == 0 {
			continue
		}
		if !r.m.matchArgs(s.cmd.reply, s.reply.args, true, listContext{}) {
			return fmt.Errorf("line %d: %s: expected %s, got %s", s.cmd.line, clipRaw(s.cmd.text), argsString(s.cmd.reply), clipRaw(s.reply.raw))
		}
	}
	if g.sleepMS > 0 {
		time.Sleep(time.Duration(g.sleepMS) * time.Millisecond)
	}
	return nil
}

func rawOf(rs []response) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.raw
	}
	return out
}

func clipRaw(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}

// expunged updates the message-number map after "* seq EXPUNGE".
func (r *itRun) expunged(seq uint32) {
	for i, s := range r.m.seqmap {
		switch {
		case s == seq:
			r.m.seqmap[i] = 0
		case s > seq:
			r.m.seqmap[i]--
		}
	}
}

// appendOf gives an APPEND without a message its next message from the
// mbox, as imaptest does.
func (r *itRun) appendOf(text string) (string, bool) {
	verb, args, _ := strings.Cut(text, " ")
	if !strings.EqualFold(verb, "append") || strings.Contains(args, "{") || strings.Contains(strings.ToLower(args), "catenate") {
		return "", false
	}
	if args == "" {
		args = itMailbox
	}
	m := r.msgs[r.nextMsg%len(r.msgs)]
	r.nextMsg++
	// A date in the arguments already: none from the mbox.
	if strings.Contains(args, `"`) {
		m.date = ""
	}
	return appendText(args, m), true
}

// run runs the script; skipped says the server lacks a capability.
func (r *itRun) run(caps []string) (skipped bool, err error) {
	for _, want := range r.sc.caps {
		if !slices.ContainsFunc(caps, func(c string) bool { return strings.EqualFold(c, want) }) {
			return true, nil
		}
	}
	defer func() {
		for _, c := range r.conns {
			c.conn.Close()
		}
	}()
	if r.msgs, err = readScriptMbox(r.sc.mbox); err != nil {
		return false, err
	}
	if err := r.setup(); err != nil {
		return false, fmt.Errorf("setup: %w", err)
	}
	for _, g := range r.sc.groups {
		if err := r.runGroup(g); err != nil {
			return false, err
		}
	}
	if !r.sc.hasLogout {
		if _, err := r.simple(r.conns[0], "LOGOUT"); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "EOF") {
			return false, err
		}
	}
	return false, nil
}

// serverCaps logs in once and reads the capabilities announced.
func serverCaps(s *server, user string) ([]string, error) {
	r := &itRun{s: s}
	c, err := r.dial()
	if err != nil {
		return nil, err
	}
	defer c.conn.Close()
	if _, err := r.simple(c, "LOGIN "+user+" Lantern-quartz-imap-91"); err != nil {
		return nil, err
	}
	untagged, err := r.simple(c, "CAPABILITY")
	if err != nil {
		return nil, err
	}
	for _, u := range untagged {
		if len(u.args) > 0 && strings.EqualFold(u.args[0].text, "CAPABILITY") {
			var caps []string
			for _, a := range u.args[1:] {
				caps = append(caps, a.text)
			}
			return caps, nil
		}
	}
	return nil, errors.New("no CAPABILITY reply")
}

// itKnownFailures are the groups that do not pass yet, each with what is
// missing. The test fails when one of them passes (take it off) or when any
// other fails; issue 16 is done when this is empty.
var itKnownFailures = map[string]string{}

// TestIMAPConformance runs Dovecot's imaptest scripts (testdata/imaptest)
// against the server and prints how many groups passed, failed and were
// left out for a capability the server does not announce.
func TestIMAPConformance(t *testing.T) { runConformance(t, false) }

// TestIMAPConformanceCompressed runs the same scripts with every
// logged-in connection compressed (COMPRESS=DEFLATE, RFC 4978), the
// client's side done by Go's compress/flate: what the server's DEFLATE
// writes must decode, and what it reads must be the client's.
func TestIMAPConformanceCompressed(t *testing.T) { runConformance(t, true) }

func runConformance(t *testing.T, compress bool) {
	scripts, err := readScripts("testdata/imaptest")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	var users bytes.Buffer
	users.WriteString("address,password\n")
	for _, sc := range scripts {
		fmt.Fprintf(&users, "it-%s@example.test,Lantern-quartz-imap-91\n", sc.name)
	}
	s.cliStdin(users.String(), "user", "import", "-")
	s.start()
	caps, err := serverCaps(s, "it-"+scripts[0].name+"@example.test")
	if err != nil {
		t.Fatalf("reading the capabilities: %v\n%s", err, s.logs())
	}
	var passed, failed, skipped []string
	only := os.Getenv("IMAPTEST_ONLY") // one script, to debug it
	for _, sc := range scripts {
		if only != "" && sc.name != only {
			continue
		}
		r := &itRun{t: t, s: s, sc: sc, user: "it-" + sc.name + "@example.test", compress: compress,
			m: &itMatcher{vars: map[string]string{"mailbox": itMailbox, "sep": "/"}}}
		skip, err := r.run(caps)
		_, known := itKnownFailures[sc.name]
		switch {
		case skip:
			skipped = append(skipped, sc.name)
		case err != nil:
			failed = append(failed, sc.name)
			if !known {
				t.Errorf("imaptest %s: %v", sc.name, err)
			} else {
				t.Logf("imaptest %s (known: %s): %v", sc.name, itKnownFailures[sc.name], err)
			}
		default:
			passed = append(passed, sc.name)
			if known {
				t.Errorf("imaptest %s passes now: take it off itKnownFailures", sc.name)
			}
		}
	}
	t.Logf("imaptest: %d groups passed, %d failed, %d left out (capability not announced: %s)",
		len(passed), len(failed), len(skipped), strings.Join(skipped, " "))
	how := ""
	if compress {
		how = " over COMPRESS=DEFLATE"
		if !slices.Contains(caps, "COMPRESS=DEFLATE") {
			t.Errorf("COMPRESS=DEFLATE is not announced: %v", caps)
		}
	}
	fmt.Printf("imaptest conformance%s: %d of %d groups passed, %d failed, %d left out\n", how, len(passed), len(scripts), len(failed), len(skipped))
}
