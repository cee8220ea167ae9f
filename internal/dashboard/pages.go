package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"mailroom/internal/store"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	"join": strings.Join,
	// actions are a queued message's: held ones are released, others held.
	"actions": func(held bool) []string {
		if held {
			return []string{"retry", "release", "delete"}
		}
		return []string{"retry", "hold", "delete"}
	},
}

// parse reads every page with the layout around it.
func parse() map[string]*template.Template {
	pages := map[string]*template.Template{}
	for _, name := range []string{"login", "overview", "messages", "message", "queue", "suppressions", "domains", "users", "keys", "webhooks"} {
		pages[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}

// render writes a page; data is the page's, the viewer is added.
func (h *dash) render(w http.ResponseWriter, r *http.Request, page string, data map[string]any, status int) {
	if data == nil {
		data = map[string]any{}
	}
	if v, ok := r.Context().Value(ctxKey{}).(*viewer); ok {
		data["Viewer"] = v
	}
	data["Page"] = page
	var buf bytes.Buffer
	if err := h.pages[page].Execute(&buf, data); err != nil {
		h.Log.Error("dashboard: rendering a page", "page", page, "err", err)
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// ranges of the charts: the period shown and its step.
var ranges = map[string]struct {
	span, step time.Duration
	label      string
}{
	"hour":  {time.Hour, time.Minute, "the last hour, per minute"},
	"day":   {24 * time.Hour, time.Hour, "the last day, per hour"},
	"month": {30 * 24 * time.Hour, 24 * time.Hour, "the last 30 days, per day"},
}

// chartKinds are the series drawn, with their colours (chosen apart for
// colour-blind readers: blue, orange, purple, red) and patterns.
var chartKinds = []struct{ Kind, Colour, Dash string }{
	{store.EventAccepted, "#1f77b4", ""}, {store.EventDelivered, "#2a9d3f", "6 3"},
	{store.EventDeferred, "#e69f00", "2 2"}, {store.EventBounced, "#c0392b", "8 3 2 3"},
}

// Summary is the overview's figures, sent live.
type Summary struct {
	Accepted, Delivered, Deferred, Bounced, Complained int64
	BounceRate, ComplaintRate                          string
	Queue                                              int
	Updated                                            string
}

func (h *dash) summary(r *http.Request, v *viewer) (Summary, error) {
	var s Summary
	cs, err := h.Store.EventCounts(r.Context(), store.CountQuery{Domains: v.Domains, Since: time.Now().Add(-24 * time.Hour), Until: time.Now().Add(time.Minute), Step: 24 * time.Hour})
	if err != nil {
		return s, err
	}
	for _, c := range cs {
		switch c.Kind {
		case store.EventAccepted:
			s.Accepted += c.Count
		case store.EventDelivered:
			s.Delivered += c.Count
		case store.EventDeferred:
			s.Deferred += c.Count
		case store.EventBounced:
			s.Bounced += c.Count
		case store.EventComplained:
			s.Complained += c.Count
		}
	}
	rate := func(n int64) string {
		if s.Accepted == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(s.Accepted))
	}
	s.BounceRate, s.ComplaintRate = rate(s.Bounced), rate(s.Complained)
	q, err := h.Store.QueueStats(r.Context())
	if err != nil {
		return s, err
	}
	s.Queue = q.Pending + q.Deferred
	s.Updated = time.Now().UTC().Format("15:04:05") + " UTC"
	return s, nil
}

// Destination is a destination domain: what its servers did with the
// mail of the last day, and why they deferred it.
type Destination struct {
	Domain                       string
	Delivered, Deferred, Bounced int
	Reasons                      []string
}

// destinations adds up the last day's latest deliveries, deferrals and
// bounces (up to 1,000 of each) by destination domain, with the distinct
// replies of the deferrals: the ten busiest.
func (h *dash) destinations(r *http.Request, v *viewer) ([]Destination, error) {
	by := map[string]*Destination{}
	for _, kind := range []string{store.EventDelivered, store.EventDeferred, store.EventBounced} {
		es, err := h.Store.Events(r.Context(), store.EventQuery{Kind: kind, Domains: v.Domains, Since: time.Now().Add(-24 * time.Hour), Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			_, d, _ := strings.Cut(e.Recipient, "@")
			x := by[d]
			if x == nil {
				x = &Destination{Domain: d}
				by[d] = x
			}
			switch kind {
			case store.EventDelivered:
				x.Delivered++
			case store.EventBounced:
				x.Bounced++
			default:
				x.Deferred++
				if len(x.Reasons) < 3 && !slices.Contains(x.Reasons, e.Detail) {
					x.Reasons = append(x.Reasons, e.Detail)
				}
			}
		}
	}
	var out []Destination
	for _, x := range by {
		out = append(out, *x)
	}
	total := func(d Destination) int { return d.Delivered + d.Deferred + d.Bounced }
	sort.Slice(out, func(i, j int) bool {
		return total(out[i]) > total(out[j]) || total(out[i]) == total(out[j]) && out[i].Domain < out[j].Domain
	})
	return out[:min(len(out), 10)], nil
}

func (h *dash) overview(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	rng := r.URL.Query().Get("range")
	if _, ok := ranges[rng]; !ok {
		rng = "hour"
	}
	s, err := h.summary(r, v)
	if err != nil {
		h.fail(w, "the figures", err)
		return
	}
	dests, err := h.destinations(r, v)
	if err != nil {
		h.fail(w, "the destinations", err)
		return
	}
	rows, err := h.series(r, v, rng)
	if err != nil {
		h.fail(w, "the chart", err)
		return
	}
	h.render(w, r, "overview", map[string]any{"S": s, "Destinations": dests, "Range": rng, "RangeLabel": ranges[rng].label, "Rows": rows,
		"Kinds": chartKinds, "Ranges": []string{"hour", "day", "month"}}, http.StatusOK)
}

// Row is one period of the chart: counts by kind.
type Row struct {
	Time   time.Time
	Counts map[string]int64
}

// series is the chart's data: every period of the range, empty ones too.
func (h *dash) series(r *http.Request, v *viewer, rng string) ([]Row, error) {
	spec := ranges[rng]
	until := time.Now().Truncate(spec.step).Add(spec.step)
	since := until.Add(-spec.span)
	cs, err := h.Store.EventCounts(r.Context(), store.CountQuery{Domains: v.Domains, Since: since, Until: until, Step: spec.step})
	if err != nil {
		return nil, err
	}
	var rows []Row
	at := map[int64]int{}
	for t := since; t.Before(until); t = t.Add(spec.step) {
		at[t.Unix()] = len(rows)
		rows = append(rows, Row{Time: t, Counts: map[string]int64{}})
	}
	for _, c := range cs {
		if i, ok := at[c.Time.Unix()]; ok {
			rows[i].Counts[c.Kind] = c.Count
		}
	}
	return rows, nil
}

// chart draws the range's series as SVG: a line per kind, axes, a legend.
func (h *dash) chart(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	rng := r.URL.Query().Get("range")
	if _, ok := ranges[rng]; !ok {
		rng = "hour"
	}
	rows, err := h.series(r, v, rng)
	if err != nil {
		h.fail(w, "the chart", err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	drawChart(w, rows, ranges[rng].label)
}

// live streams the overview's figures every five seconds (Server-Sent
// Events), for as long as the page is open (at most an hour).
func (h *dash) live(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "Streaming is not possible on this connection.", http.StatusInternalServerError)
		return
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Hour + time.Minute))
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	end := time.After(time.Hour)
	for {
		if _, err := h.session(r); err != nil {
			return // signed out (or expired) meanwhile
		}
		s, err := h.summary(r, v)
		if err == nil {
			b, _ := json.Marshal(s)
			fmt.Fprintf(w, "event: summary\ndata: %s\n\n", b)
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-end:
			return
		case <-tick.C:
		}
	}
}

func (h *dash) messages(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	q := r.URL.Query()
	mq := store.MessageQuery{Recipient: strings.TrimSpace(q.Get("to")), Sender: strings.TrimSpace(q.Get("from")), Subject: q.Get("subject"),
		Tag: q.Get("tag"), Status: q.Get("status"), Domains: v.Domains, Limit: 100}
	if mq.Status != "" && !slices.Contains(store.EventKinds, mq.Status) {
		mq.Status = ""
	}
	ms, err := h.Store.LoggedMessages(r.Context(), mq)
	if err != nil {
		h.fail(w, "the message log", err)
		return
	}
	h.render(w, r, "messages", map[string]any{"Messages": ms, "Q": mq, "Kinds": store.EventKinds}, http.StatusOK)
}

// message shows one message: its log entry, the start of its text while
// it is stored, and its events with each attempt's reply.
func (h *dash) message(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	id := r.PathValue("id")
	ms, err := h.Store.LoggedMessages(r.Context(), store.MessageQuery{QueueID: id, Domains: v.Domains, Limit: 1})
	if err != nil {
		h.fail(w, "the message log", err)
		return
	}
	if len(ms) == 0 {
		h.render(w, r, "message", map[string]any{"Missing": id}, http.StatusNotFound)
		return
	}
	es, err := h.Store.Events(r.Context(), store.EventQuery{QueueID: id, Domains: v.Domains, Limit: 1000})
	if err != nil {
		h.fail(w, "the events", err)
		return
	}
	slices.Reverse(es)
	m := ms[0]
	// The text is shown to admins, and to the message's own sender and
	// recipients: a colleague's mail stays theirs.
	own := v.Admin || strings.EqualFold(m.User, v.User) || strings.EqualFold(m.Sender, v.User) ||
		slices.ContainsFunc(m.Recipients, func(rc string) bool { return strings.EqualFold(rc, v.User) })
	if !v.Admin && m.Direction == store.Inbound {
		m.Recipients = slices.DeleteFunc(m.Recipients, func(rc string) bool {
			_, d, _ := strings.Cut(rc, "@")
			return !slices.Contains(v.Domains, strings.ToLower(d))
		})
	}
	preview := ""
	if own {
		if rc, err := h.Store.OpenByQueueID(r.Context(), id); err == nil {
			b, _ := io.ReadAll(io.LimitReader(rc, 8<<10))
			rc.Close()
			preview = strings.ToValidUTF8(string(b), "\uFFFD")
		}
	}
	h.render(w, r, "message", map[string]any{"M": m, "Events": es, "Preview": preview, "Own": own}, http.StatusOK)
}

func (h *dash) queue(w http.ResponseWriter, r *http.Request) {
	es, err := h.Store.QueueEntries(r.Context(), "")
	if err != nil {
		h.fail(w, "the queue", err)
		return
	}
	es = slices.DeleteFunc(es, func(e store.QueueEntry) bool { return e.State != store.StatePending && e.State != store.StateDeferred })
	h.render(w, r, "queue", map[string]any{"Entries": es[:min(len(es), 500)], "Total": len(es), "Done": r.URL.Query().Get("done")}, http.StatusOK)
}

// queueAction is a queue form's POST: retry, hold, release or delete.
func (h *dash) queueAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	var n int
	var err error
	switch action {
	case "retry":
		n, err = h.Store.RetryNow(r.Context(), id)
	case "hold":
		n, err = h.Store.SetHeld(r.Context(), id, true)
	case "release":
		n, err = h.Store.SetHeld(r.Context(), id, false)
	case "delete":
		n, err = h.Store.DeleteQueued(r.Context(), id)
	default:
		http.Error(w, "Unknown action.", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, "the queue", err)
		return
	}
	h.Log.Info("dashboard: queue action", "user", viewerOf(r).User, "queue_id", id, "action", action, "recipients", n)
	http.Redirect(w, r, "/queue?done="+urlQuery(fmt.Sprintf("%s: %s, %d recipient(s)", id, action, n)), http.StatusSeeOther)
}

func (h *dash) fail(w http.ResponseWriter, what string, err error) {
	h.Log.Error("dashboard: reading "+what, "err", err)
	http.Error(w, "The server could not read "+what+" now: try again shortly.", http.StatusServiceUnavailable)
}
