package inbound

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// BenchmarkRcpt: the policy work for one RCPT to a local user on port 25
// (domain, user, alias and quota lookups in the store).
func BenchmarkRcpt(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.AddDomain(ctx, store.Domain{Name: "bench.test"}); err != nil {
		b.Fatal(err)
	}
	if _, err := st.AddUser(ctx, store.User{Address: "u@bench.test"}); err != nil {
		b.Fatal(err)
	}
	be := New(st, &Config{Hostname: "mx.bench.test", SubaddressSeparator: "+"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	si := &smtpserver.SessionInfo{Mode: smtpserver.ModeMX, Remote: netip.MustParseAddrPort("192.0.2.1:1234")}
	env := &smtpserver.Transaction{From: smtp.Address{Local: "a", Domain: "src.test"}}
	to := smtp.Address{Local: "u", Domain: "bench.test"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.Rcpt(ctx, si, env, to, smtp.RcptParams{}); err != nil {
			b.Fatal(err)
		}
	}
}
