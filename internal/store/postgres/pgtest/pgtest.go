// Package pgtest runs a throwaway PostgreSQL for tests and benchmarks:
// Debian's server binaries (scripts/test-deps.sh installs them), a new
// cluster made by initdb in a temporary directory, listening on a Unix
// socket there and on one loopback port, trusting local connections. As
// root (PostgreSQL refuses to run as root) it runs as the postgres user.
// Nothing is left behind: Stop kills the server it started, by its pid,
// and removes the directory.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one running cluster.
type Server struct {
	Dir      string // the cluster's directory (data, socket, log)
	Port     int    // on 127.0.0.1
	opts     Options
	cred     *syscall.Credential // the postgres user's, when run as root
	postgres string              // the server program
	cmd      *exec.Cmd
	done     chan struct{} // closed when the server process has exited
	n        atomic.Int64
}

// Options tune the cluster.
type Options struct {
	// Durable keeps fsync on (benchmarks); tests turn it off, which loses
	// nothing when a process (PostgreSQL itself too) is killed, only when
	// the machine stops: commits still write the WAL before they return
	// (synchronous_commit stays on), into the kernel's cache.
	Durable bool
	// Settings are more server settings ("name=value"), e.g. the
	// benchmark's shared_preload_libraries=pg_stat_statements.
	Settings []string
}

// bin finds a server program of the newest PostgreSQL installed.
func bin(name string) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("pgtest: %s not found: install PostgreSQL with ./scripts/test-deps.sh (make test does)", name)
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Start makes a cluster and starts its server.
func Start(opts Options) (*Server, error) {
	initdb, err := bin("initdb")
	if err != nil {
		return nil, err
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if out, err := s.command(initdb, "-D", filepath.Join(s.Dir, "data"), "-U", "mailroom", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		os.RemoveAll(s.Dir)
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	return s, s.start()
}

// StartStandby makes a streaming replica of primary (pg_basebackup) and
// starts it: a hot standby, read-only until promoted (Promote).
func StartStandby(primary *Server) (*Server, error) {
	basebackup, err := bin("pg_basebackup")
	if err != nil {
		return nil, err
	}
	s, err := newServer(primary.opts)
	if err != nil {
		return nil, err
	}
	if out, err := s.command(basebackup, "-D", filepath.Join(s.Dir, "data"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port),
		"-U", "mailroom", "-R", "-X", "stream", "--no-sync", "-c", "fast").CombinedOutput(); err != nil {
		os.RemoveAll(s.Dir)
		return nil, fmt.Errorf("pgtest: pg_basebackup: %v\n%s", err, out)
	}
	return s, s.start()
}

// newServer makes the cluster's directory, owned by the user the server
// runs as.
func newServer(opts Options) (*Server, error) {
	postgres, err := bin("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mailroom-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, opts: opts, postgres: postgres}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root, and there is no postgres user to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return s, nil
}

// start serves the cluster on a free loopback port.
func (s *Server) start() error {
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(s.Dir)
			return err
		}
		s.Port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		err = s.serve()
		if err == nil {
			return nil
		}
		if attempt == 2 {
			os.RemoveAll(s.Dir)
			return err
		}
	}
}

// Promote makes a standby the primary.
func (s *Server) Promote(ctx context.Context) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var promoted bool
	if err := c.QueryRow(ctx, "SELECT pg_promote(true, 30)").Scan(&promoted); err != nil {
		return err
	}
	if !promoted {
		return errors.New("pgtest: the standby was not promoted within 30 s")
	}
	return nil
}

// command is a program of the server's, run as its user, in its directory.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// serve runs the server on the cluster and port, and waits until it takes
// connections.
func (s *Server) serve() error {
	args := []string{"-D", filepath.Join(s.Dir, "data"), "-k", s.Dir, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port),
		"-c", "max_connections=300", "-c", "shared_buffers=128MB", "-c", "log_min_messages=warning"}
	if !s.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	for _, kv := range s.opts.Settings {
		args = append(args, "-c", kv)
	}
	log, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if s.cred != nil {
		os.Chown(log.Name(), int(s.cred.Uid), int(s.cred.Gid))
	}
	s.cmd = s.command(s.postgres, args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	// The server dies with the process that started it, even one killed or
	// crashed before Stop: the kernel signals it when the starting thread
	// ends, and that thread is held until the server has exited (a Go
	// thread may otherwise end at any time).
	s.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	s.done = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := s.cmd.Start(); err != nil {
			started <- err
			close(s.done)
			return
		}
		started <- nil
		s.cmd.Wait()
		close(s.done)
	}()
	err = <-started
	log.Close()
	if err != nil {
		return err
	}
	if err := s.waitReady(15 * time.Second); err != nil {
		s.kill()
		b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		return fmt.Errorf("pgtest: the server did not start: %v\n%s", err, b)
	}
	return nil
}

// Pid is the server's (postmaster's) process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Kill kills the server as a crash would (SIGKILL), leaving its data.
func (s *Server) Kill() { s.kill() }

// Restart starts the server again on the same data and port (after Kill;
// it tries again while the killed server's backends are still going away).
func (s *Server) Restart() error {
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = s.serve(); err == nil {
			return nil
		}
	}
	return err
}

// waitReady waits until the server takes connections.
func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-s.done:
			return errors.New("the server exited")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("no connection within the limit: " + err.Error())
		}
	}
}

func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// URL is the connection string of a database of the cluster (over TCP on
// loopback, as nodes on other machines would connect).
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://mailroom@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// CreateDB makes a database with a name unique in the cluster, from
// template ("" for the default), and returns its name.
func (s *Server) CreateDB(ctx context.Context, template string) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	q := "CREATE DATABASE " + name
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := c.Exec(ctx, q); err != nil {
		return "", fmt.Errorf("pgtest: %s: %w", q, err)
	}
	return name, nil
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.kill()
	}
	if strings.HasPrefix(filepath.Base(s.Dir), "mailroom-pg-") {
		os.RemoveAll(s.Dir)
	}
}
