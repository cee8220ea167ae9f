package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// sink is an SMTP server that accepts every message, keeps nothing (or,
// with -durable, only a journal of the data) and notes when each one was
// acknowledged. It stays up for the whole
// benchmark; the harness resets it before a run and asks it, over HTTP, when
// the Nth message arrived.
type sink struct {
	journal *journal // nil: keep nothing; else every message is made durable before its 250
	mu      sync.Mutex
	at      []int64 // UnixNano of each 250 after end of data since the last reset
}

func (s *sink) reset() {
	s.mu.Lock()
	s.at = s.at[:0]
	s.mu.Unlock()
}

func (s *sink) received() {
	now := time.Now().UnixNano()
	s.mu.Lock()
	s.at = append(s.at, now)
	s.mu.Unlock()
}

// nth returns how many messages arrived and when the nth did (0: not yet).
func (s *sink) nth(n int) (count int, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= 1 && len(s.at) >= n {
		at = s.at[n-1]
	}
	return len(s.at), at
}

const sinkEHLO = "250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 0\r\n250 ENHANCEDSTATUSCODES"

// session speaks just enough SMTP for smtp-source, Mailroom's and Postfix's
// SMTP clients: no TLS, no AUTH, no CHUNKING. Replies are flushed when the
// client has nothing more buffered, which is what PIPELINING needs.
func (s *sink) session(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 4<<10)
	reply := func(line string) error {
		w.WriteString(line)
		w.WriteString("\r\n")
		if r.Buffered() == 0 {
			return w.Flush()
		}
		return nil
	}
	if reply("220 sink.bench.test ESMTP benchkit sink") != nil {
		return
	}
	rcpts := 0
	var data, envelope []byte
	done := make(chan error, 1)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return // includes over-long lines: a sink need not be polite
		}
		verb := string(bytes.ToUpper(bytes.TrimRight(line[:min(len(line), 4)], "\r\n")))
		var answer string
		switch verb {
		case "EHLO":
			answer = sinkEHLO
		case "HELO", "LHLO":
			answer = "250 sink.bench.test"
		case "MAIL", "RSET":
			rcpts = 0
			envelope = envelope[:0]
			if s.journal != nil { // kept with the data
				envelope = append(envelope, line...)
			}
			answer = "250 2.0.0 OK"
		case "RCPT":
			rcpts++
			if s.journal != nil {
				envelope = append(envelope, line...)
			}
			answer = "250 2.1.5 OK"
		case "NOOP":
			answer = "250 2.0.0 OK"
		case "DATA":
			if rcpts == 0 {
				answer = "554 5.5.1 no valid recipients"
				break
			}
			if err := reply("354 go ahead"); err != nil {
				return
			}
			if data, err = readData(r, envelope, s.journal != nil); err != nil {
				return
			}
			envelope = data[:0]
			if s.journal != nil {
				if err := s.journal.store(data, done); err != nil {
					rcpts = 0
					if reply("451 4.3.0 "+err.Error()) != nil {
						return
					}
					continue
				}
			}
			rcpts = 0
			s.received()
			answer = "250 2.0.0 OK: received"
		case "QUIT":
			reply("221 2.0.0 bye")
			w.Flush()
			return
		default:
			answer = "502 5.5.2 not implemented"
		}
		if reply(answer) != nil {
			return
		}
	}
}

// readData reads message data up to and including the line "."; with keep
// it appends the data to buf (the durable sink), else it drops it.
func readData(r *bufio.Reader, buf []byte, keep bool) ([]byte, error) {
	lineStart := true
	for {
		frag, err := r.ReadSlice('\n')
		if keep {
			buf = append(buf, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			lineStart = false
			continue
		}
		if err != nil {
			return buf, err
		}
		if lineStart && (string(frag) == ".\r\n" || string(frag) == ".\n") {
			return buf, nil
		}
		lineStart = true
	}
}

// control is the sink's HTTP interface for the harness:
//
//	POST /reset                       forget what arrived so far
//	GET  /wait?n=N&timeout=D[&stall=S] wait until N messages arrived, at most
//	                                  D, or until none arrived for S;
//	                                  200 or 504, body "count=C nth=UNIXNANO"
func (s *sink) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.reset()
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil || n < 1 {
			http.Error(w, "n: want a positive number", http.StatusBadRequest)
			return
		}
		timeout, err := time.ParseDuration(r.FormValue("timeout"))
		if err != nil {
			http.Error(w, "timeout: want a duration", http.StatusBadRequest)
			return
		}
		stall := timeout
		if v := r.FormValue("stall"); v != "" {
			if stall, err = time.ParseDuration(v); err != nil {
				http.Error(w, "stall: want a duration", http.StatusBadRequest)
				return
			}
		}
		start := time.Now()
		lastCount, lastChange := -1, start
		for {
			count, at := s.nth(n)
			now := time.Now()
			if count != lastCount {
				lastCount, lastChange = count, now
			}
			if at != 0 || now.Sub(start) >= timeout || now.Sub(lastChange) >= stall || r.Context().Err() != nil {
				if at == 0 {
					w.WriteHeader(http.StatusGatewayTimeout)
				}
				fmt.Fprintf(w, "count=%d nth=%d\n", count, at)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return mux
}

// runSink serves SMTP and the control port until it is signalled.
func runSink(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "SMTP address (loopback only)")
	controlAddr := fs.String("control", "127.0.0.1:0", "HTTP control address (loopback only)")
	addrFile := fs.String("addr-file", "", `write "SMTP-ADDRESS CONTROL-ADDRESS" to this file once listening`)
	durable := fs.String("durable", "", "make each message durable in a journal in this folder before its 250 (group commit)")
	prealloc := fs.Int64("prealloc", 0, "with -durable: write the journal with zeros up to this many bytes first, so that messages overwrite allocated blocks")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	for _, a := range []string{*listen, *controlAddr} {
		if err := checkLoopback(a); err != nil {
			return err
		}
	}
	s := &sink{}
	if *durable != "" {
		j, err := openJournal(*durable, *prealloc)
		if err != nil {
			return err
		}
		s.journal = j
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	cl, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: s.control(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(cl)
	defer hs.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if err := writeAddrFile(*addrFile, ln.Addr().String()+" "+cl.Addr().String()); err != nil {
		return err
	}
	return s.serve(ctx, ln)
}

// serve answers the connections to ln until ctx ends.
func (s *sink) serve(ctx context.Context, ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say: try again
			continue
		}
		go s.session(c)
	}
}
