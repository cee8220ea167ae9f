package inbound

import (
	"context"
	"errors"
	"strings"

	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

// maxAliasDepth bounds alias chains (and so alias loops).
const maxAliasDepth = 10

// resolve finds the local users that mail for to goes to. The local part is
// matched without regard to case; "user+tag" falls back to "user" and an
// unknown local part to the domain's catch-all. Nothing in the local part
// (%, !, @ in quotes) ever routes mail elsewhere: it is only a name to look
// up.
func (b *Backend) resolve(ctx context.Context, cfg *Config, to smtp.Address) (local, error) {
	r := resolver{b: b, ctx: ctx, cfg: cfg, seen: map[string]bool{}}
	addr := strings.ToLower(to.Local) + "@" + to.Domain
	found, err := r.expand(addr, 0)
	if err != nil {
		return local{}, err
	}
	if len(r.users)+len(r.forwards) == 0 || !found {
		return local{}, smtp.Errorf(550, "5.1.1", "No such user here: <%s>", to)
	}
	return local{users: r.users, forwards: r.forwards}, nil
}

// local is what a recipient in a local domain resolves to: local users,
// and the addresses at other domains its aliases forward to.
type local struct {
	users    []store.User
	forwards []string
}

type resolver struct {
	b        *Backend
	ctx      context.Context
	cfg      *Config
	seen     map[string]bool
	users    []store.User
	forwards []string
}

// expand adds the users that addr leads to and reports whether addr, its
// base address or the domain's catch-all exists.
func (r *resolver) expand(addr string, depth int) (bool, error) {
	if depth > maxAliasDepth {
		return false, smtp.Errorf(554, "5.4.6", "Alias loop or chain too long at <%s>", addr)
	}
	if ok, err := r.lookup(addr, depth); ok || err != nil {
		return ok, err
	}
	local, domain, _ := strings.Cut(addr, "@")
	if sep := r.cfg.SubaddressSeparator; sep != "" {
		if base, _, ok := strings.Cut(local, sep); ok && base != "" {
			if ok, err := r.lookup(base+"@"+domain, depth); ok || err != nil {
				return ok, err
			}
		}
	}
	d, err := r.b.store.Domain(r.ctx, domain)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, tempFailure(err)
	}
	if d.CatchAll != "" && d.CatchAll != addr {
		return r.lookup(d.CatchAll, depth)
	}
	return false, nil
}

// lookup finds addr as a user or an alias (no sub-address or catch-all).
func (r *resolver) lookup(addr string, depth int) (bool, error) {
	if r.seen[addr] {
		return true, nil
	}
	u, err := r.b.store.User(r.ctx, addr)
	if err == nil {
		r.seen[addr] = true
		r.users = append(r.users, u)
		return true, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return false, tempFailure(err)
	}
	a, err := r.b.store.Alias(r.ctx, addr)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, tempFailure(err)
	}
	r.seen[addr] = true
	for _, t := range a.Targets {
		t = strings.ToLower(t)
		_, domain, _ := strings.Cut(t, "@")
		isLocal, err := r.b.isLocalDomain(r.ctx, domain)
		if err != nil {
			return false, err
		}
		if !isLocal { // forwarded, with SRS (forward.go)
			if !r.seen[t] {
				r.seen[t] = true
				r.forwards = append(r.forwards, t)
			}
			continue
		}
		if _, err := r.expand(t, depth+1); err != nil {
			return false, err
		}
	}
	return true, nil
}
