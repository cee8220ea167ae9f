package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime"
)

// startProfiling serves Go's profiles (CPU, heap, allocations, mutex,
// block, goroutines) on the loopback address in MAILROOM_PPROF, for
// performance work: `go tool pprof http://127.0.0.1:6060/debug/pprof/profile`.
// Off unless set; only loopback addresses are accepted.
func startProfiling(log *slog.Logger) error {
	addr := os.Getenv("MAILROOM_PPROF")
	if addr == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("MAILROOM_PPROF=%q: give a loopback address and port such as 127.0.0.1:6060", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("MAILROOM_PPROF: %w", err)
	}
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(10000) // one sample per 10µs blocked
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(l, mux)
	log.Warn("profiling endpoint open (MAILROOM_PPROF)", "addr", l.Addr().String())
	return nil
}
