package tests

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailroom/internal/dns/dnstest"
)

// screenshotDir is where the dashboard tests leave their screenshots for
// review ($MAILROOM_SCREENSHOTS, else a folder in the system's temporary
// directory).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("MAILROOM_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "mailroom-dashboard-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dashboardServer is a server with the HTTP listener, a next hop for
// far.test that defers later@far.test, and alice an admin.
func dashboardServer(t *testing.T, ip string) (*server, *fakeHop, string) {
	hop := startHop(t, ip, func(_ int, line string) string {
		switch l := strings.ToLower(line); {
		case strings.HasPrefix(l, "rcpt to:<later@"):
			return "451 4.7.1 Greylisted, come back later\r\n"
		case strings.HasPrefix(l, "rcpt to:<gone@"):
			return "550 5.1.1 No such user here\r\n"
		}
		return hopDefault(line)
	})
	dnsAddr := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {ip}}).Addr
	tables := fmt.Sprintf("[tls]\nself_signed = true\n[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1h\"]\n", dnsAddr, hop.port)
	s := newServer(t, "", tables)
	httpAddr := freeAddr(t)
	s.extraListen = fmt.Sprintf("http = [%q]", httpAddr)
	s.writeConfig("", tables)
	s.start()
	s.cli("user", "set", "alice@example.test", "--admin")
	return s, hop, "https://" + httpAddr
}

// TestDashboard: in headless Chromium, alice signs in, sees a message sent
// over SMTP appear in the live figures (without a reload) and in the
// message log with its events (delivered to one recipient, deferred with
// the remote reply for the other), and retries the deferred one from the
// queue page; screenshots of each page are saved.
func TestDashboard(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	chromium := requireTool(t, "chromium")
	s, hop, base := dashboardServer(t, "127.0.0.126")
	shots := screenshotDir(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1200, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg) // quality 100: PNG
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		}
	}
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return v
	}
	// The first run starts the browser, under the test's whole deadline
	// (a shorter one would stop the browser with it).
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	for i, step := range []chromedp.Action[chromedp.Void]{
		chromedp.WaitVisible(chromedp.CSS(`#address`)),
		shot("1-login"),
		chromedp.SendKeys(chromedp.CSS(`#address`), "alice@example.test"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "secret-alice"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-live="Delivered"]`)),
	} {
		sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
		err := chromedp.Do(sctx, step)
		scancel()
		if err != nil {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("signing in, step %d: %v\npage: %s\n%s", i, err, body, s.logs())
		}
	}
	if h := text("h1"); h != "Overview" {
		t.Fatalf("after signing in, the page is %q", h)
	}
	submit(t, s, []string{"carol@far.test", "later@far.test", "gone@far.test"}, "From: alice@example.test\r\nSubject: Dashboard test\r\n\r\nHello from the dashboard test.\r\n")
	// The live figures change without a reload.
	deadline := time.Now().Add(30 * time.Second)
	for {
		delivered := text(`[data-live="Delivered"]`)
		if n, _ := strconv.Atoi(delivered); n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overview never showed the delivery (Delivered %q)", delivered)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// After a reload, the chart's table has the delivery in its last minute.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?range=hour"), chromedp.WaitVisible(chromedp.CSS(`img.chart`))); err != nil {
		t.Fatal(err)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("details table tbody tr")].reduce((s, r) => s + Number(r.cells[2].textContent), 0)`)); err != nil || n < 1 {
		t.Errorf("the chart's table counts %d deliveries (%v)", n, err)
	}
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector("img.chart").naturalWidth`)); err != nil || w == 0 {
		t.Errorf("the chart image did not load: width %d, %v", w, err)
	}
	if d := text("table.destinations"); !strings.Contains(d, "far.test") || !strings.Contains(d, "451 4.7.1 Greylisted") {
		t.Errorf("the top destinations:\n%s", d)
	}
	err := chromedp.Do(ctx, shot("2-overview"),
		chromedp.Navigate(base+"/messages?subject=dashboard"),
		chromedp.WaitVisible(chromedp.CSS(`table.log`)),
		shot("3-messages"),
		chromedp.Click(chromedp.CSS(`table.log a`)),
		chromedp.WaitVisible(chromedp.CSS(`table.events`)),
		shot("4-message"),
	)
	if err != nil {
		t.Fatal(err)
	}
	events := text(`table.events`)
	for _, want := range []string{"delivered", "carol@far.test", "deferred", "later@far.test", "451 4.7.1 Greylisted", "mx.far.test"} {
		if !strings.Contains(events, want) {
			t.Errorf("the message's events lack %q:\n%s", want, events)
		}
	}
	before := hop.count("RCPT TO:<later@far.test>")
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/queue"),
		chromedp.WaitVisible(chromedp.CSS(`table.queue`)),
		shot("5-queue"),
		chromedp.Click(chromedp.CSS(`table.queue button[aria-label^="retry"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.done`)),
	)
	if done := text(".done"); err != nil || !strings.Contains(done, "retry, 1 recipient") {
		t.Fatalf("retry from the queue page: %v %q", err, done)
	}
	until(t, s, "the deferred recipient tried again", func() bool { return hop.count("RCPT TO:<later@far.test>") > before })
	// The admin pages: the bounced address lifted from the suppression
	// list, a domain's DNS checked, the users, an API key revoked, a
	// webhook's deliveries.
	newKey(t, s, "shop", "--domain", "example.test")
	s.cli("webhook", "add", "https://hooks.far.test/in", "--domain", "example.test", "--events", "delivered")
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/suppressions"),
		chromedp.WaitVisible(chromedp.CSS(`table.suppressions`)),
		shot("6-suppressions"),
		chromedp.Click(chromedp.CSS(`button[aria-label="lift gone@far.test"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.done`)),
	)
	if err != nil || !strings.Contains(text(".done"), "gone@far.test may be sent to again") || strings.Contains(s.cli("suppression", "list"), "gone@far.test") {
		t.Errorf("lifting a suppression: %v", err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/domains"),
		chromedp.Click(chromedp.CSS(`button[aria-label="check the DNS of example.test"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.findings`)),
		shot("7-domains"),
		chromedp.Navigate(base+"/users"),
		chromedp.WaitVisible(chromedp.CSS(`table.users`)),
		shot("8-users"),
		chromedp.Navigate(base+"/webhooks"),
		chromedp.WaitVisible(chromedp.CSS(`section.hook`)),
		shot("9-webhooks"),
		chromedp.Navigate(base+"/keys"),
		chromedp.WaitVisible(chromedp.CSS(`table.keys`)),
		shot("10-keys"),
		chromedp.Click(chromedp.CSS(`button[aria-label="revoke shop"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.done`)),
	)
	if err != nil || !strings.Contains(text(".done"), "revoked") || strings.Contains(s.cli("apikey", "list"), "shop") {
		t.Errorf("the admin pages: %v", err)
	}
	if f := text("main"); !strings.Contains(f, "No API key") {
		t.Errorf("the keys page after the revocation:\n%s", f)
	}
	// On a phone's screen the pages fit its width.
	for _, page := range []string{"/", "/messages", "/queue"} {
		err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS("main")),
			shot("phone"+strings.ReplaceAll(page, "/", "-")))
		if err != nil {
			t.Fatal(err)
		}
		if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > 400 {
			t.Errorf("%s on a phone is %d pixels wide (%v), wider than its 390", page, w, err)
		}
	}
	t.Logf("screenshots in %s", shots)
}

// TestDashboardSecurity: the session cookie is __Host-, Secure, HttpOnly
// and SameSite=Strict; a form posted without the session's token, or from
// another origin, is refused; a user who is not an admin cannot see the
// queue; pages carry a strict Content-Security-Policy; a wrong password, or
// an app password, is refused; signing out ends the session.
func TestDashboardSecurity(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	s, _, base := dashboardServer(t, "127.0.0.127")
	client := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	signIn := func(c *http.Client, user, pw string) *http.Response {
		resp, err := c.PostForm(base+"/login", url.Values{"address": {user}, "password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := signIn(client(), "alice@example.test", "wrong"); r.StatusCode != 401 {
		t.Errorf("a wrong password: %d", r.StatusCode)
	}
	// An app password is for the mail client it was made for, not the web.
	made := s.cli("user", "app-password", "add", "alice@example.test", "phone")
	app := strings.TrimSpace(made[strings.LastIndex(strings.TrimSpace(made), "\n")+1:])
	if r := signIn(client(), "alice@example.test", app); r.StatusCode != 401 {
		t.Errorf("an app password signed in to the dashboard: %d", r.StatusCode)
	}
	admin := client()
	r := signIn(admin, "alice@example.test", "secret-alice")
	cookie := r.Header.Get("Set-Cookie")
	if r.StatusCode != 303 || !strings.HasPrefix(cookie, "__Host-mailroom=") || !strings.Contains(cookie, "Secure") || !strings.Contains(cookie, "HttpOnly") ||
		!strings.Contains(cookie, "SameSite=Strict") || strings.Contains(cookie, "Domain=") {
		t.Fatalf("sign in: %d %q", r.StatusCode, cookie)
	}
	page, err := admin.Get(base + "/queue")
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != 200 || !strings.Contains(page.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("the queue page for an admin: %d %v", page.StatusCode, page.Header)
	}
	post := func(c *http.Client, form url.Values, origin string) int {
		req, _ := http.NewRequest("POST", base+"/queue/NOSUCH/retry", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(admin, url.Values{}, ""); code != 403 {
		t.Errorf("a form without the session's token: %d", code)
	}
	if code := post(admin, url.Values{"csrf": {"guess"}}, "https://evil.example"); code != 403 {
		t.Errorf("a form from another origin: %d", code)
	}
	user := client()
	signIn(user, "bob@example.test", "secret-bob-lantern")
	if resp, err := user.Get(base + "/queue"); err != nil || resp.StatusCode != 403 {
		t.Errorf("the queue page for a user: %v %v", err, resp)
	}
	if resp, err := user.Get(base + "/messages"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the message log for a user: %v %v", err, resp)
	}
	// Signing out ends the session in the store: the cookie no longer works.
	req, _ := http.NewRequest("GET", base+"/", nil)
	u, _ := url.Parse(base)
	for _, c := range user.Jar.Cookies(u) {
		req.AddCookie(c)
	}
	stolen := req.Header.Get("Cookie")
	body := strings.NewReader("csrf=" + csrfOf(t, user, base))
	out, _ := http.NewRequest("POST", base+"/logout", body)
	out.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := user.Do(out); err != nil || resp.StatusCode != 303 {
		t.Fatalf("sign out: %v %v", err, resp)
	}
	again, _ := http.NewRequest("GET", base+"/messages", nil)
	again.Header.Set("Cookie", stolen)
	if resp, err := client().Do(again); err != nil || resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("the cookie after signing out: %v %v", err, resp)
	}
	_ = s
}

// csrfOf reads the session's CSRF token from a page's sign-out form.
func csrfOf(t *testing.T, c *http.Client, base string) string {
	resp, err := c.Get(base + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	_, rest, ok := strings.Cut(b.String(), `name="csrf" value="`)
	if !ok {
		t.Fatal("no CSRF token on the page")
	}
	return rest[:strings.Index(rest, `"`)]
}
