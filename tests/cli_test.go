package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLI: the administration commands, their --json output, and errors
// that say what to do next; they work while the server runs.
func TestCLI(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	s.cli("domain", "add", "Other.Test", "--catch-all", "alice@example.test")
	var domains []struct {
		Name     string `json:"name"`
		CatchAll string `json:"catch_all"`
	}
	json.Unmarshal([]byte(s.cli("domain", "list", "--json")), &domains)
	if len(domains) != 2 || domains[1].Name != "other.test" || domains[1].CatchAll != "alice@example.test" {
		t.Errorf("domain list: %+v", domains)
	}
	s.cli("user", "add", "Carol@Other.Test", "--generate")
	var users []struct {
		Address string `json:"address"`
	}
	json.Unmarshal([]byte(s.cli("user", "list", "other.test", "--json")), &users)
	if len(users) != 1 || users[0].Address != "carol@other.test" {
		t.Errorf("user list: %+v", users)
	}
	if out := s.cli("user", "add", "dave@example.test"); !strings.Contains(out, "password (shown once): ") {
		t.Errorf("user add without a password does not print the generated one: %q", out)
	}
	// Weak passwords are refused with what to do instead; --generate makes
	// one that logs in.
	for _, weak := range []string{"x", "password123", "erin@example.test"} {
		_, errOut, err := s.run(weak+"\n", "user", "add", "erin@example.test", "--password-stdin")
		if err == nil || !strings.Contains(errOut, "--generate") {
			t.Errorf("user add with the password %q: %v %q", weak, err, errOut)
		}
	}
	out := s.cli("user", "add", "erin@example.test", "--generate")
	_, generated, _ := strings.Cut(out, "password (shown once): ")
	generated = strings.TrimSpace(generated)
	sub := s.dialAddr(s.subAddr)
	sub.cmd("EHLO cli.example", "250 ")
	sub.startTLSInsecure()
	sub.cmd("EHLO cli.example", "250 ")
	sub.cmd("AUTH PLAIN "+plainAuth("erin@example.test", generated), "235 ")
	s.cli("alias", "add", "team@other.test", "carol@other.test", "alice@example.test")
	var aliases []struct {
		Address string   `json:"address"`
		Targets []string `json:"targets"`
	}
	json.Unmarshal([]byte(s.cli("alias", "list", "--json")), &aliases)
	if len(aliases) != 1 || len(aliases[0].Targets) != 2 {
		t.Errorf("alias list: %+v", aliases)
	}
	if out := s.cli("user", "list"); !strings.Contains(out, "ADDRESS") || !strings.Contains(out, "carol@other.test") {
		t.Errorf("user list table: %q", out)
	}

	// The running server sees the changes at once.
	c := s.dial()
	c.cmd("EHLO cli.example", "250 ")
	if r := c.sendMail("a@remote.example", []string{"team@other.test", "unknown@other.test"}, "Subject: to the team\r\n\r\nhi\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("send to alias and catch-all: %q", r)
	}
	if n := len(s.mailbox("carol@other.test")); n != 1 {
		t.Errorf("carol has %d messages", n)
	}
	if n := len(s.mailbox("alice@example.test")); n != 1 {
		t.Errorf("alice (alias target and catch-all) has %d messages, want 1 copy", n)
	}

	errorsCases := []struct {
		name string
		args []string
		want string
	}{
		{"a user in an unknown domain", []string{"user", "add", "x@nowhere.test"}, "mailroom domain add nowhere.test"},
		{"a malformed address", []string{"user", "add", "not-an-address"}, "write it like user@example.com"},
		{"a duplicate user", []string{"user", "add", "alice@example.test"}, "already exists"},
		{"a domain that still has users", []string{"domain", "del", "other.test"}, "delete those first"},
		{"an unknown user's mailbox", []string{"mailbox", "list", "ghost@example.test"}, "mailroom user list"},
		{"a bad message ID", []string{"mailbox", "cat", "alice@example.test", "x"}, "mailbox list"},
		{"a missing message", []string{"mailbox", "cat", "alice@example.test", "99"}, "not found"},
		{"a bad export format", []string{"export", "alice@example.test", "/tmp/x", "--format", "pst"}, "use maildir or mbox"},
		{"a missing subcommand", []string{"user", "send-as", "alice@example.test", "@other.test"}, "run 'mailroom user send-as --help'"},
		{"an unknown subcommand", []string{"queue", "flush"}, `"flush" is not a command of "mailroom queue"`},
	}
	for _, c := range errorsCases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, err := s.run("", c.args...)
			if err == nil {
				t.Fatal("the command succeeded")
			}
			if !strings.Contains(errOut, c.want) {
				t.Errorf("error %q does not contain %q", errOut, c.want)
			}
		})
	}

	s.cli("alias", "del", "team@other.test")
	s.cli("user", "del", "carol@other.test")
	s.cli("domain", "del", "other.test")
	s.stop()
	// And while the server is stopped.
	s.cli("domain", "add", "third.test")
	if out := s.cli("domain", "list"); !strings.Contains(out, "third.test") || strings.Contains(out, "other.test") {
		t.Errorf("domain list after changes: %q", out)
	}
}

// TestExport: a Maildir export opens in mutt and in Python's mailbox
// module; an mbox export quotes "From " lines.
func TestExport(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	c := s.dial()
	c.cmd("EHLO export.example", "250 ")
	c.sendMail("a@remote.example", []string{"alice@example.test"}, "From: Ann <a@remote.example>\r\nSubject: first export\r\n\r\nhello\r\n")
	c.sendMail("a@remote.example", []string{"alice@example.test"}, "From: Ann <a@remote.example>\r\nSubject: second export\r\n\r\nFrom the start\r\n")
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	if out := s.cli("export", "alice@example.test", md); !strings.Contains(out, "exported 2 messages") {
		t.Errorf("export output: %q", out)
	}
	py := requireTool(t, "python3")
	out, err := exec.Command(py, "-c", `import mailbox,sys
md = mailbox.Maildir(sys.argv[1], create=False)
print(sorted(m["Subject"] for m in md))`, md).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "['first export', 'second export']") {
		t.Errorf("python mailbox.Maildir: %v %s", err, out)
	}

	screen := muttScreen(t, md)
	for _, want := range []string{"Msgs:2", "New:2", "first export", "second export"} {
		if !strings.Contains(screen, want) {
			t.Errorf("mutt's screen lacks %q:\n%s", want, screen)
		}
	}

	// On a terminal the export draws a progress bar.
	progress := terminalScreen(t, fmt.Sprintf("%s export alice@example.test %s --config %s; sleep 5", binary, filepath.Join(dir, "tty"), s.config), "exported")
	if !strings.Contains(progress, "] 2/2") || !strings.Contains(progress, "exported 2 messages") {
		t.Errorf("no progress bar on a terminal:\n%s", progress)
	}

	s.cli("export", "alice@example.test", dir, "--format", "mbox")
	mbox, _ := os.ReadFile(filepath.Join(dir, "INBOX.mbox"))
	if !strings.HasPrefix(string(mbox), "From a@remote.example ") || !strings.Contains(string(mbox), "\n>From the start\n") {
		t.Errorf("mbox:\n%s", mbox)
	}

	// Maildir files have LF line ends (mutt would show ^M otherwise).
	files, _ := filepath.Glob(filepath.Join(md, "new", "*"))
	if len(files) != 2 {
		t.Errorf("the two unread messages are not in new/ (so that readers show them as new): %v", files)
	}
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "\r") || !strings.Contains(string(b), "\nSubject: ") {
			t.Errorf("%s is not a message with LF line ends: %q", f, b)
		}
	}
	// Exporting again writes only what is new, in both formats.
	c.sendMail("a@remote.example", []string{"alice@example.test"}, "From: Ann <a@remote.example>\r\nSubject: third export\r\n\r\nagain\r\n")
	if out := s.cli("export", "alice@example.test", md); !strings.Contains(out, "exported 1 messages") || !strings.Contains(out, "2 already there") {
		t.Errorf("a second Maildir export: %q", out)
	}
	if files, _ := filepath.Glob(filepath.Join(md, "new", "*")); len(files) != 3 {
		t.Errorf("after a second export the Maildir holds %d messages, want 3", len(files))
	}
	if out := s.cli("export", "alice@example.test", dir, "--format", "mbox"); !strings.Contains(out, "exported 1 messages") {
		t.Errorf("a second mbox export: %q", out)
	}
	mbox, _ = os.ReadFile(filepath.Join(dir, "INBOX.mbox"))
	if n := strings.Count("\n"+string(mbox), "\nFrom a@remote.example "); n != 3 || !strings.Contains(string(mbox), "Subject: third export\n") {
		t.Errorf("after a second export the mbox holds %d messages, want 3:\n%s", n, mbox)
	}
	out, err = exec.Command(py, "-c", `import mailbox,sys
print(sorted(m["Subject"] for m in mailbox.mbox(sys.argv[1])))`, filepath.Join(dir, "INBOX.mbox")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "['first export', 'second export', 'third export']") {
		t.Errorf("python mailbox.mbox: %v %s", err, out)
	}
}

// muttScreen opens a Maildir in mutt inside tmux and returns the screen.
func muttScreen(t *testing.T, maildir string) string {
	t.Helper()
	requireTool(t, "mutt")
	return terminalScreen(t, "mutt -n -F /dev/null -e 'set folder="+filepath.Dir(maildir)+" spoolfile="+maildir+"' -R -f "+maildir, "Msgs:")
}

// terminalScreen runs command on a terminal (tmux) and returns the screen
// once it shows until (or after 5 s).
func terminalScreen(t *testing.T, command, until string) string {
	t.Helper()
	tmux := requireTool(t, "tmux")
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	run := func(args ...string) string {
		out, _ := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		return string(out)
	}
	defer run("kill-server")
	run("new-session", "-d", "-x", "120", "-y", "30", command)
	var screen string
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		screen = run("capture-pane", "-p")
		if strings.Contains(screen, until) {
			break
		}
	}
	run("send-keys", "q")
	return screen
}

// TestCLIChangesReachRunningServer: the server keeps recipient lookups in
// memory; a change the CLI makes from its own process while the server
// runs is seen by the next SMTP session (a recipient refused, then added,
// then removed again; an alias added).
func TestCLIChangesReachRunningServer(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	rcpt := func(addr string) string {
		c := s.dial()
		c.cmd("EHLO cache.example", "250 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.send("RCPT TO:<" + addr + ">\r\n")
		r := c.reply()
		c.cmd("QUIT", "221 ")
		return r
	}
	// The server's answer may trail the CLI's exit by one inotify event.
	expect := func(addr, prefix, when string) {
		t.Helper()
		r := rcpt(addr)
		for deadline := time.Now().Add(2 * time.Second); !strings.HasPrefix(r, prefix) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			r = rcpt(addr)
		}
		if !strings.HasPrefix(r, prefix) {
			t.Fatalf("%s: RCPT TO:<%s> answered %q, want %s", when, addr, r, prefix)
		}
	}
	expect("newbie@example.test", "550 5.1.1", "before the user exists")
	expect("newbie@example.test", "550 5.1.1", "asked again (now from memory)")
	s.cli("user", "add", "newbie@example.test", "--generate")
	expect("newbie@example.test", "250 ", "after user add")
	s.cli("user", "del", "newbie@example.test")
	expect("newbie@example.test", "550 5.1.1", "after user del")
	expect("info@example.test", "550 5.1.1", "before the alias exists")
	s.cli("alias", "add", "info@example.test", "alice@example.test")
	expect("info@example.test", "250 ", "after alias add")
}

// TestUserImportAndMailboxDelete: "user import" adds users from CSV and
// JSON (all lines checked first, a bad one stops everything, a second run
// skips what exists, generated passwords log in); "mailbox delete" removes
// messages and gives their space back.
func TestUserImportAndMailboxDelete(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("address,password,quota\nok@example.test,,\nweak@example.test,x,\nnobody@nowhere.test,,\n"), 0o600)
	if _, errOut, err := s.run("", "user", "import", bad); err == nil || !strings.Contains(errOut, "bad.csv:3:") || !strings.Contains(errOut, "bad.csv:4:") || !strings.Contains(errOut, "nothing was imported") {
		t.Errorf("import of a file with bad lines: %v %q", err, errOut)
	}
	if strings.Contains(s.cli("user", "list"), "ok@example.test") {
		t.Error("a file with bad lines added some users")
	}
	good := filepath.Join(dir, "users.csv")
	os.WriteFile(good, []byte("address,password,quota\nimp1@example.test,,2MiB\nimp2@example.test,correct horse battery staple,\n"), 0o600)
	out := s.cli("user", "import", good)
	if !strings.Contains(out, "imported 2 users, skipped 0") {
		t.Fatalf("import: %q", out)
	}
	_, rest, _ := strings.Cut(out, "imp1@example.test\t")
	generated := strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0])
	if out := s.cli("user", "import", good); !strings.Contains(out, "imported 0 users, skipped 2") {
		t.Errorf("a second import: %q", out)
	}
	js := filepath.Join(dir, "users.json")
	os.WriteFile(js, []byte(`[{"address": "imp3@example.test", "password": "correct horse battery staple"}]`), 0o600)
	if out := s.cli("user", "import", js); !strings.Contains(out, "imported 1 users") {
		t.Errorf("JSON import: %q", out)
	}
	for _, login := range []struct{ user, pw string }{{"imp1@example.test", generated}, {"imp3@example.test", "correct horse battery staple"}} {
		c := s.dialAddr(s.subAddr)
		c.cmd("EHLO import.example", "250 ")
		c.startTLSInsecure()
		c.cmd("EHLO import.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth(login.user, login.pw), "235 ")
	}

	c := s.dial()
	c.cmd("EHLO del.example", "250 ")
	for i := 0; i < 3; i++ {
		c.sendMail("a@remote.example", []string{"imp1@example.test"}, fmt.Sprintf("Subject: m%d\r\n\r\n%s\r\n", i, strings.Repeat("x", 100000)))
	}
	usedBefore := usedBytes(t, s, "imp1@example.test")
	if out := s.cli("mailbox", "delete", "imp1@example.test", "1", "3"); !strings.Contains(out, "deleted 2 messages") {
		t.Errorf("mailbox delete: %q", out)
	}
	if msgs := s.mailbox("imp1@example.test"); len(msgs) != 1 || msgs[0].Subject != "m1" {
		t.Errorf("after deleting 1 and 3: %+v", msgs)
	}
	if used := usedBytes(t, s, "imp1@example.test"); used >= usedBefore-200000 {
		t.Errorf("used bytes %d -> %d: the space did not come back", usedBefore, used)
	}
	if _, errOut, err := s.run("", "mailbox", "delete", "imp1@example.test", "7"); err == nil || !strings.Contains(errOut, "mailroom mailbox list") {
		t.Errorf("deleting a message that is not there: %v %q", err, errOut)
	}
	if out := s.cli("mailbox", "delete", "imp1@example.test", "--all"); !strings.Contains(out, "deleted 1 messages") {
		t.Errorf("mailbox delete --all: %q", out)
	}
}

func usedBytes(t *testing.T, s *server, addr string) int64 {
	var users []struct {
		Address   string `json:"address"`
		UsedBytes int64  `json:"used_bytes"`
	}
	json.Unmarshal([]byte(s.cli("user", "list", "--json")), &users)
	for _, u := range users {
		if u.Address == addr {
			return u.UsedBytes
		}
	}
	t.Fatalf("%s is not in user list", addr)
	return 0
}

// TestMailboxFolders: every user has INBOX and the special-use folders,
// and the CLI shows them with their messages.
func TestMailboxFolders(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	c := s.dial()
	c.cmd("EHLO folders.example", "250 ")
	for _, subject := range []string{"one", "two"} {
		c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: "+subject+"\r\n\r\nx\r\n")
	}
	var folders []struct {
		Name       string `json:"name"`
		SpecialUse string `json:"special_use"`
		Messages   int    `json:"messages"`
		Unseen     int    `json:"unseen"`
		Size       int64  `json:"size"`
		Subscribed bool   `json:"subscribed"`
	}
	if err := json.Unmarshal([]byte(s.cli("mailbox", "folders", "alice@example.test", "--json")), &folders); err != nil {
		t.Fatal(err)
	}
	uses := map[string]string{}
	for _, f := range folders {
		uses[f.Name] = f.SpecialUse
		if !f.Subscribed {
			t.Errorf("%s is not subscribed", f.Name)
		}
		if f.Name == "INBOX" && (f.Messages != 2 || f.Unseen != 2 || f.Size == 0) {
			t.Errorf("INBOX: %+v, want 2 messages, 2 unseen", f)
		}
	}
	want := map[string]string{"INBOX": "", "Drafts": `\Drafts`, "Sent": `\Sent`, "Junk": `\Junk`, "Trash": `\Trash`, "Archive": `\Archive`}
	if len(uses) != len(want) {
		t.Errorf("folders %v, want %v", uses, want)
	}
	for name, use := range want {
		if got, ok := uses[name]; !ok || got != use {
			t.Errorf("%s: %q (present %v), want %q", name, got, ok, use)
		}
	}
	if out := s.cli("mailbox", "folders", "alice@example.test"); !strings.Contains(out, "FOLDER") || !strings.Contains(out, `\Sent`) {
		t.Errorf("the table:\n%s", out)
	}
}

// TestMailboxImport: a Maildir tree (Dovecot's layout) and an mbox file
// are imported while the server runs, with folders, flags and dates; a
// second run imports nothing more; IMAP shows what came in.
func TestMailboxImport(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	root := t.TempDir()
	for _, d := range []string{"", ".Lists.go-nuts"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(root, d, sub), 0o700)
		}
	}
	os.WriteFile(filepath.Join(root, "cur", "1.host:2,S"), []byte("Message-ID: <i1@x>\nSubject: imported one\n\nbody\n"), 0o600)
	os.WriteFile(filepath.Join(root, ".Lists.go-nuts", "cur", "2.host:2,FS"), []byte("Message-ID: <i2@x>\nSubject: list mail\n\nbody\n"), 0o600)
	when := time.Date(2015, 6, 7, 8, 9, 10, 0, time.UTC)
	os.Chtimes(filepath.Join(root, ".Lists.go-nuts", "cur", "2.host:2,FS"), when, when)
	mbox := filepath.Join(t.TempDir(), "old.mbox")
	os.WriteFile(mbox, []byte("From a@b Sat Mar 24 23:00:00 2007\nMessage-ID: <m1@x>\nSubject: from mbox\nStatus: RO\n\n>From quoted\n"), 0o600)
	if out := s.cli("mailbox", "import", "alice@example.test", root); !strings.Contains(out, "2 messages imported into 2 folders, 0 already there") {
		t.Errorf("first import: %s", out)
	}
	if out := s.cli("mailbox", "import", "alice@example.test", root); !strings.Contains(out, "0 messages imported into 2 folders, 2 already there") {
		t.Errorf("second import: %s", out)
	}
	if out := s.cli("mailbox", "import", "alice@example.test", mbox, "--folder", "Archive/2007"); !strings.Contains(out, "1 messages imported") {
		t.Errorf("mbox import: %s", out)
	}
	c := dialIMAPS(t, s.imapsAddr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	if got := c.cmd(`LIST "" "*"`, "OK"); !has(got, `"/" Lists/go-nuts`) || !has(got, `"/" Archive/2007`) {
		t.Errorf("LIST after the import: %q", got)
	}
	c.cmd("SELECT Lists/go-nuts", "OK")
	if got := c.cmd("FETCH 1 (FLAGS INTERNALDATE)", "OK"); !has(got, `\Flagged`) || !has(got, `\Seen`) || !has(got, `"07-Jun-2015 08:09:10 +0000"`) {
		t.Errorf("the imported message: %q", got)
	}
	c.cmd("SELECT Archive/2007", "OK")
	if got := c.cmd("FETCH 1 (FLAGS BODY[TEXT])", "OK"); !has(got, `\Seen`) {
		t.Errorf("the mbox message: %q", got)
	}
	_, errOut, err := s.run("", "mailbox", "import", "alice@example.test", t.TempDir())
	if err == nil || !strings.Contains(errOut, "neither an mbox file nor a Maildir") {
		t.Errorf("importing an empty directory: %v %s", err, errOut)
	}
}
