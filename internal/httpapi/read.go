package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/store"
)

// scope narrows a query's domains to the caller's: a domain asked for
// must be one of them (else nothing matches).
func (c *caller) scope(asked string) []string {
	asked = strings.ToLower(asked)
	switch {
	case asked == "":
		return c.domains
	case c.domains == nil || slices.Contains(c.domains, asked):
		return []string{asked}
	}
	return []string{}
}

// timeParam reads an RFC 3339 time from the query.
func timeParam(q url.Values, name string) (time.Time, *failure) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fail(400, "invalid_parameter", fmt.Sprintf("%s=%q is not a time like 2026-12-07T10:00:00Z", name, v))
	}
	return t, nil
}

func limitParam(q url.Values) (int, *failure) {
	v := q.Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, fail(400, "invalid_parameter", "limit is a number from 1 to 1000")
	}
	return n, nil
}

func writeFailure(w http.ResponseWriter, f *failure) {
	writeJSON(w, f.status, apiError{f.body})
}

// listMessages is GET /api/v1/messages: the message log, newest first,
// searched; "next" is the cursor of the following page.
func (a *api) listMessages(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	mq := store.MessageQuery{Recipient: q.Get("to"), Sender: q.Get("from"), Subject: q.Get("subject"), Tag: q.Get("tag"),
		Status: q.Get("status"), Direction: q.Get("direction"), Domains: c.scope(q.Get("domain"))}
	var f *failure
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &mq.Since}, {"until", &mq.Until}, {"before", &mq.Before}} {
		if *p.dst, f = timeParam(q, p.name); f != nil {
			writeFailure(w, f)
			return
		}
	}
	if mq.Limit, f = limitParam(q); f != nil {
		writeFailure(w, f)
		return
	}
	if mq.Status != "" && !slices.Contains(store.EventKinds, mq.Status) {
		writeError(w, 400, "invalid_parameter", "status is an event kind: "+strings.Join(store.EventKinds, ", "))
		return
	}
	ms, err := a.Store.LoggedMessages(r.Context(), mq)
	if err != nil {
		a.internal(w, "reading the message log", err)
		return
	}
	out := struct {
		Messages []store.LoggedMessage `json:"messages"`
		Next     string                `json:"next,omitempty"` // pass as before= for the next page
	}{Messages: ms}
	if out.Messages == nil {
		out.Messages = []store.LoggedMessage{}
	}
	if len(ms) == mq.Limit {
		out.Next = ms[len(ms)-1].Created.UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, out)
}

// getMessage is GET /api/v1/messages/{id}: one message with its events,
// oldest first.
func (a *api) getMessage(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	ms, err := a.Store.LoggedMessages(r.Context(), store.MessageQuery{QueueID: id, Domains: c.domains, Limit: 1})
	if err != nil {
		a.internal(w, "reading the message log", err)
		return
	}
	if len(ms) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "No message "+id+" in the log of this key's domains (the log keeps [events] keep)")
		return
	}
	// A message received for several domains is logged under the first;
	// each key sees only its domains' recipients and their events.
	es, err := a.Store.Events(r.Context(), store.EventQuery{QueueID: id, Domains: c.domains, Limit: 1000})
	if err != nil {
		a.internal(w, "reading events", err)
		return
	}
	if m := &ms[0]; c.domains != nil && m.Direction == store.Inbound {
		m.Recipients = slices.DeleteFunc(m.Recipients, func(rcpt string) bool {
			_, d, _ := strings.Cut(rcpt, "@")
			return !slices.Contains(c.domains, strings.ToLower(d))
		})
	}
	slices.Reverse(es)
	if es == nil {
		es = []store.Event{}
	}
	writeJSON(w, http.StatusOK, struct {
		Message store.LoggedMessage `json:"message"`
		Events  []store.Event       `json:"events"`
	}{ms[0], es})
}

// listEvents is GET /api/v1/events: events, newest first; "next" is the
// cursor (an event ID) of the following page.
func (a *api) listEvents(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	eq := store.EventQuery{QueueID: q.Get("message"), Recipient: q.Get("to"), Kind: q.Get("kind"), Domains: c.scope(q.Get("domain"))}
	var f *failure
	if eq.Since, f = timeParam(q, "since"); f == nil {
		eq.Until, f = timeParam(q, "until")
	}
	if f == nil {
		eq.Limit, f = limitParam(q)
	}
	if f != nil {
		writeFailure(w, f)
		return
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			writeError(w, 400, "invalid_parameter", "before is an event ID (the next of a page)")
			return
		}
		eq.Before = n
	}
	if eq.Kind != "" && !slices.Contains(store.EventKinds, eq.Kind) {
		writeError(w, 400, "invalid_parameter", "kind is one of "+strings.Join(store.EventKinds, ", "))
		return
	}
	es, err := a.Store.Events(r.Context(), eq)
	if err != nil {
		a.internal(w, "reading events", err)
		return
	}
	out := struct {
		Events []store.Event `json:"events"`
		Next   string        `json:"next,omitempty"`
	}{Events: es}
	if out.Events == nil {
		out.Events = []store.Event{}
	}
	if len(es) == eq.Limit {
		out.Next = strconv.FormatInt(es[len(es)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// Steps of the statistics.
var steps = map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}

// StatsRow is one period's counts by event kind.
type StatsRow struct {
	Time   time.Time        `json:"time"`
	Counts map[string]int64 `json:"counts"`
}

// stats is GET /api/v1/stats: events counted per minute, hour or day, of
// the caller's domains (or one of them, or one tag), from since (default:
// a day, a week or an hour before until) to until (default: now).
func (a *api) stats(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	stepName := q.Get("step")
	if stepName == "" {
		stepName = "hour"
	}
	step, ok := steps[stepName]
	if !ok {
		writeError(w, 400, "invalid_parameter", "step is minute, hour or day")
		return
	}
	until, f := timeParam(q, "until")
	if f != nil {
		writeFailure(w, f)
		return
	}
	if until.IsZero() {
		until = time.Now()
	}
	since, f := timeParam(q, "since")
	if f != nil {
		writeFailure(w, f)
		return
	}
	if since.IsZero() {
		since = until.Add(-map[string]time.Duration{"minute": time.Hour, "hour": 24 * time.Hour, "day": 30 * 24 * time.Hour}[stepName])
	}
	if until.Sub(since) > 400*step || !until.After(since) {
		writeError(w, 400, "invalid_parameter", "since must come before until, and the window hold at most 400 steps")
		return
	}
	cs, err := a.Store.EventCounts(r.Context(), store.CountQuery{Domains: c.scope(q.Get("domain")), Tag: q.Get("tag"), Since: since, Until: until, Step: step})
	if err != nil {
		a.internal(w, "reading statistics", err)
		return
	}
	rows := []StatsRow{}
	for _, ct := range cs {
		if len(rows) == 0 || !rows[len(rows)-1].Time.Equal(ct.Time) {
			rows = append(rows, StatsRow{Time: ct.Time.UTC(), Counts: map[string]int64{}})
		}
		rows[len(rows)-1].Counts[ct.Kind] = ct.Count
	}
	writeJSON(w, http.StatusOK, struct {
		Step  string     `json:"step"`
		Since time.Time  `json:"since"`
		Until time.Time  `json:"until"`
		Rows  []StatsRow `json:"rows"`
	}{stepName, since.UTC(), until.UTC(), rows})
}

// notFound says a queue ID or address is unknown.
func notFound(w http.ResponseWriter, err error, what string) bool {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", what)
		return true
	}
	return false
}
