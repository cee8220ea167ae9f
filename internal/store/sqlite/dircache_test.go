package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailroom/internal/store"
)

// TestDirectoryCacheSeesOtherProcesses: a second handle on the same data
// directory stands for the CLI changing the directory while the server
// runs; the server's cached answers, found and not found, must follow
// every kind of change: at once when the stamp is read with stat, as soon
// as inotify has told (a wakeup of the watching goroutine) otherwise.
func TestDirectoryCacheSeesOtherProcesses(t *testing.T) {
	for _, watch := range []bool{false, true} {
		t.Run(map[bool]string{false: "stat", true: "inotify"}[watch], func(t *testing.T) {
			testDirectoryCacheSeesOtherProcesses(t, watch)
		})
	}
}

func testDirectoryCacheSeesOtherProcesses(t *testing.T, watch bool) {
	dir := t.TempDir()
	ctx := context.Background()
	server, alice := setup(t, dir, Options{})
	defer server.Close()
	if watch && (!server.dircache.watching.Load() || !server.supcache.watching.Load()) {
		t.Skip("no inotify here")
	}
	if !watch {
		server.dircache.close() // back to stat
		server.supcache.close()
	}
	cli := open(t, dir, Options{})
	defer cli.Close()

	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: got %v, want not found", what, err)
		}
	}
	// Fill the server's cache, with misses too.
	if _, err := server.User(ctx, alice.Address); err != nil {
		t.Fatal(err)
	}
	_, err := server.User(ctx, "bob@a.example")
	notFound("bob before", err)
	_, err = server.Alias(ctx, "info@a.example")
	notFound("alias before", err)
	_, err = server.Domain(ctx, "b.example")
	notFound("domain before", err)
	if _, ok, err := server.Suppressed(ctx, "gone@remote.example", time.Now()); ok || err != nil {
		t.Fatalf("suppressed before: %v, %v", ok, err)
	}

	steps := []struct {
		name  string
		do    func() error
		check func() error
	}{
		{"user added", func() error {
			_, err := cli.AddUser(ctx, store.User{Address: "bob@a.example", PasswordHash: "h1"})
			return err
		}, func() error {
			u, err := server.User(ctx, "bob@a.example")
			if err == nil && u.PasswordHash != "h1" {
				return errors.New("wrong user: " + u.PasswordHash)
			}
			return err
		}},
		{"password changed", func() error {
			return cli.SetPassword(ctx, "bob@a.example", store.Secrets{Hash: "h2"})
		}, func() error {
			u, err := server.User(ctx, "bob@a.example")
			if err == nil && u.PasswordHash != "h2" {
				return errors.New("old password hash " + u.PasswordHash + " still served")
			}
			return err
		}},
		{"settings changed", func() error {
			return cli.SetUserSettings(ctx, "bob@a.example", store.UserSettings{RequireSCRAM: true})
		}, func() error {
			u, err := server.User(ctx, "bob@a.example")
			if err == nil && !u.Settings.RequireSCRAM {
				return errors.New("old settings still served")
			}
			return err
		}},
		{"alias added", func() error {
			return cli.AddAlias(ctx, store.Alias{Address: "info@a.example", Targets: []string{"bob@a.example"}})
		}, func() error {
			_, err := server.Alias(ctx, "info@a.example")
			return err
		}},
		{"domain added", func() error {
			return cli.AddDomain(ctx, store.Domain{Name: "b.example"})
		}, func() error {
			_, err := server.Domain(ctx, "b.example")
			return err
		}},
		{"suppression added", func() error {
			now := time.Now()
			return cli.Suppress(ctx, store.Suppression{Address: "gone@remote.example", Reason: "550 5.1.1", Created: now, Until: now.Add(time.Hour)})
		}, func() error {
			if _, ok, err := server.Suppressed(ctx, "gone@remote.example", time.Now()); !ok || err != nil {
				return fmt.Errorf("not suppressed (%v)", err)
			}
			return nil
		}},
		{"suppression lifted", func() error {
			return cli.Unsuppress(ctx, "gone@remote.example")
		}, func() error {
			if _, ok, err := server.Suppressed(ctx, "gone@remote.example", time.Now()); ok || err != nil {
				return fmt.Errorf("still suppressed (%v)", err)
			}
			return nil
		}},
		{"user deleted", func() error {
			return cli.DeleteUser(ctx, "bob@a.example")
		}, func() error {
			if _, err := server.User(ctx, "bob@a.example"); !errors.Is(err, store.ErrNotFound) {
				return errors.New("deleted user still found")
			}
			return nil
		}},
		{"alias deleted", func() error {
			return cli.DeleteAlias(ctx, "info@a.example")
		}, func() error {
			if _, err := server.Alias(ctx, "info@a.example"); !errors.Is(err, store.ErrNotFound) {
				return errors.New("deleted alias still found")
			}
			return nil
		}},
		{"domain deleted", func() error {
			return cli.DeleteDomain(ctx, "b.example")
		}, func() error {
			if _, err := server.Domain(ctx, "b.example"); !errors.Is(err, store.ErrNotFound) {
				return errors.New("deleted domain still found")
			}
			return nil
		}},
	}
	for _, st := range steps {
		if err := st.check(); err == nil {
			t.Fatalf("%s: the server saw the change before it was made", st.name)
		}
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		err := st.check()
		for deadline := time.Now().Add(2 * time.Second); watch && err != nil && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			err = st.check()
		}
		if err != nil {
			t.Fatalf("%s: the server's lookup did not see the change: %v", st.name, err)
		}
	}
}

// TestDirectoryCacheUsedBytes: the cached user's used bytes follow the
// messages accepted in this process, and a refused message adds nothing.
func TestDirectoryCacheUsedBytes(t *testing.T) {
	ctx := context.Background()
	s, alice := setup(t, t.TempDir(), Options{})
	defer s.Close()
	used := func() int64 {
		t.Helper()
		u, err := s.User(ctx, alice.Address)
		if err != nil {
			t.Fatal(err)
		}
		return u.UsedBytes
	}
	if got := used(); got != 0 {
		t.Fatalf("used before: %d", got)
	}
	m := newMessage(make([]byte, 1000), "one", alice)
	if err := s.Accept(ctx, m); err != nil {
		t.Fatal(err)
	}
	want := int64(1000 + len(m.Local[0].Prefix))
	if got := used(); got != want {
		t.Fatalf("used after one message: %d, want %d", got, want)
	}
	over := newMessage(make([]byte, 5000), "over quota", alice)
	s.SetDefaultQuota(want + 100) // alice has no quota of her own
	var qe *store.QuotaError
	if err := s.Accept(ctx, over); !errors.As(err, &qe) {
		t.Fatalf("Accept over quota: %v", err)
	}
	if got := used(); got != want {
		t.Fatalf("used after a refused message: %d, want %d", got, want)
	}
	// What the cache says is what the database says.
	fresh, err := s.readUser(ctx, alice.Address)
	if err != nil || fresh.UsedBytes != want {
		t.Fatalf("database: %d, %v; want %d", fresh.UsedBytes, err, want)
	}
}

// TestDirectoryStampBounded: the stamp grows by an octet per change and
// is replaced by a new file when full; each step is a change the cache
// notices.
func TestDirectoryStampBounded(t *testing.T) {
	c, err := newDirCache(t.TempDir(), stampDirectory, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.close() // stat: each change is visible at once
	prev := c.readStamp()
	for i := 0; i < stampMax+10; i++ {
		if err := c.touch(); err != nil {
			t.Fatal(err)
		}
		id := c.readStamp()
		if id == prev || !id.ok {
			t.Fatalf("change %d: stamp %+v did not change from %+v", i, id, prev)
		}
		prev = id
	}
	fi, err := os.Stat(c.stampPath)
	if err != nil || fi.Size() > stampMax {
		t.Fatalf("stamp: %v, %v", fi, err)
	}
	if m, _ := filepath.Glob(c.stampPath + ".tmp*"); len(m) > 0 {
		t.Fatalf("left behind: %v", m)
	}
}

// TestDirectoryCacheChangeDuringRead: a lookup that read the database
// before a change of this process committed must not record what it read,
// even when another lookup saw the stamp before the change was written to
// it; and a user read before an accept committed takes the accept's used
// bytes.
func TestDirectoryCacheChangeDuringRead(t *testing.T) {
	c, err := newDirCache(t.TempDir(), stampDirectory, nil)
	if err != nil {
		t.Fatal(err)
	}
	// stat: the stamp's changes are seen at once. (With the watch, the
	// event of changed() below may come after the lookups and empty the
	// cache between them: a flaky test.)
	c.close()
	users := func() map[string]cached[store.User] { return c.users }
	notFound := func() error { return store.ErrNotFound }
	loads := 0
	stale := func() (store.User, error) {
		loads++
		c.local.Add(1) // changed(), up to its reset...
		c.mu.Lock()
		c.reset(noStamp)
		c.mu.Unlock()
		c.current() // ...and another lookup before the stamp is written
		return store.User{ID: 7, Address: "a@x.example", PasswordHash: "old"}, nil
	}
	lookup(c, users, "a@x.example", stale, notFound)
	fresh := func() (store.User, error) {
		loads++
		return store.User{ID: 7, Address: "a@x.example", PasswordHash: "new", UsedBytes: 10}, nil
	}
	if u, _ := lookup(c, users, "a@x.example", fresh, notFound); u.PasswordHash != "new" || loads != 2 {
		t.Fatalf("got %q after %d loads: the entry read before the change was kept", u.PasswordHash, loads)
	}

	c.changed()
	racing := func() (store.User, error) {
		c.setUsed(7, 500) // an accept commits while the user is read
		return store.User{ID: 7, Address: "a@x.example", UsedBytes: 10}, nil
	}
	lookup(c, users, "a@x.example", racing, notFound)
	if u, _ := lookup(c, users, "a@x.example", fresh, notFound); u.UsedBytes != 500 {
		t.Fatalf("used bytes %d, want 500 (the commit during the read)", u.UsedBytes)
	}
}

// TestDirectoryCacheWatchGone: with the stamps directory removed, the
// inotify watch ends and lookups go back to stat, still seeing changes.
func TestDirectoryCacheWatchGone(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	server, _ := setup(t, dir, Options{})
	defer server.Close()
	if !server.dircache.watching.Load() {
		t.Skip("no inotify here")
	}
	if err := os.RemoveAll(filepath.Join(dir, stampDir)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); server.dircache.watching.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not notice its directory was gone")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := server.User(ctx, "bob@a.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob before: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, stampDir), 0o750); err != nil {
		t.Fatal(err)
	}
	cli := open(t, dir, Options{})
	defer cli.Close()
	if _, err := cli.AddUser(ctx, store.User{Address: "bob@a.example", PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.User(ctx, "bob@a.example"); err != nil {
		t.Fatalf("after the watch ended, a change by another process was not seen: %v", err)
	}
}

// TestSuppressionsStampApart: a suppression added by another process (a
// bounce, or the CLI) reaches the server's suppressions without emptying
// its directory entries or its body cache, and a directory change leaves
// the suppressions cached; in both modes of noticing changes. The stamps
// exist before the server starts, so that each change is one inotify
// event and the test knows when the server has seen all of them.
func TestSuppressionsStampApart(t *testing.T) {
	for _, watch := range []bool{false, true} {
		t.Run(map[bool]string{false: "stat", true: "inotify"}[watch], func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			first, alice := setup(t, dir, Options{}) // its changes grow the directory's stamp
			first.Close()
			if err := os.WriteFile(filepath.Join(dir, stampDir, stampSuppressions), []byte{'.'}, 0o640); err != nil {
				t.Fatal(err)
			}
			server := open(t, dir, Options{})
			defer server.Close()
			if watch && (!server.dircache.watching.Load() || !server.supcache.watching.Load()) {
				t.Skip("no inotify here")
			}
			if !watch {
				server.dircache.close()
				server.supcache.close()
			}
			cli := open(t, dir, Options{})
			defer cli.Close()
			// seen waits until the server's watches have counted dirs
			// changes of the directory's stamp and sups of the
			// suppressions'; with stat there is nothing to wait for.
			seen := func(dirs, sups uint64) {
				t.Helper()
				for deadline := time.Now().Add(2 * time.Second); watch; time.Sleep(time.Millisecond) {
					d, s := server.dircache.changes.Load(), server.supcache.changes.Load()
					if d == dirs && s == sups {
						return
					}
					if time.Now().After(deadline) || d > dirs || s > sups {
						t.Fatalf("the watches counted %d changes of the directory and %d of suppressions, want %d and %d", d, s, dirs, sups)
					}
				}
			}
			cached := func(c *dirCache, addr string) bool {
				c.current()
				c.mu.Lock()
				defer c.mu.Unlock()
				_, user := c.users[addr]
				_, sup := c.suppressions[addr]
				return user || sup
			}

			if _, err := server.User(ctx, alice.Address); err != nil {
				t.Fatal(err)
			}
			server.bodies.put(42, []byte("a body on its way out"))
			if !cached(server.dircache, alice.Address) {
				t.Fatal("a user looked up is not cached")
			}
			now := time.Now()
			if err := cli.Suppress(ctx, store.Suppression{Address: "gone@remote.example", Reason: "550 5.1.1", Created: now, Until: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			seen(0, 1)
			if _, ok, err := server.Suppressed(ctx, "gone@remote.example", time.Now()); !ok || err != nil {
				t.Fatalf("the server did not see the suppression: %v, %v", ok, err)
			}
			if !cached(server.dircache, alice.Address) {
				t.Error("a suppression emptied the directory's cache")
			}
			if _, ok := server.bodies.get(42); !ok {
				t.Error("a suppression emptied the body cache")
			}
			if !cached(server.supcache, "gone@remote.example") {
				t.Fatal("a suppression looked up is not cached")
			}

			if _, err := cli.AddUser(ctx, store.User{Address: "bob@a.example", PasswordHash: "h"}); err != nil {
				t.Fatal(err)
			}
			seen(1, 1)
			if _, err := server.User(ctx, "bob@a.example"); err != nil {
				t.Fatalf("the server did not see the new user: %v", err)
			}
			if !cached(server.supcache, "gone@remote.example") {
				t.Error("a directory change emptied the suppressions' cache")
			}
		})
	}
}

// TestStampEvent: the watch counts a change of a stamp for events on the
// stamp and on the file that replaces it, and for nothing else.
func TestStampEvent(t *testing.T) {
	tests := []struct {
		stamp, ev string
		want      bool
	}{
		{stampDirectory, "directory", true},
		{stampDirectory, "directory.tmp123456", true}, // touch's replacement, renamed over it
		{stampDirectory, "suppressions", false},
		{stampDirectory, "suppressions.tmp1", false},
		{stampDirectory, "directoryx", false},
		{stampDirectory, "", false},
		{stampSuppressions, "suppressions", true},
		{stampSuppressions, "suppressions.tmp99", true},
		{stampSuppressions, "directory", false},
	}
	for _, tt := range tests {
		if got := stampEvent(tt.stamp, tt.ev); got != tt.want {
			t.Errorf("stampEvent(%q, %q) = %v, want %v", tt.stamp, tt.ev, got, tt.want)
		}
	}
}
