package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"mailroom/internal/store"
)

// QueuedRecipient is one recipient waiting in the queue.
type QueuedRecipient struct {
	QueueID     string    `json:"queue_id"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	Held        bool      `json:"held"`
	Size        int64     `json:"size"`
	Created     time.Time `json:"created"`
}

// listQueue is GET /api/v1/queue: what waits (or, with ?id=, one
// message's recipients).
func (a *api) listQueue(w http.ResponseWriter, r *http.Request, _ *caller) {
	limit, f := limitParam(r.URL.Query())
	if f != nil {
		writeFailure(w, f)
		return
	}
	es, err := a.Store.QueueEntries(r.Context(), r.URL.Query().Get("id"))
	if err != nil {
		a.internal(w, "reading the queue", err)
		return
	}
	es = es[:min(len(es), limit)]
	out := []QueuedRecipient{}
	for _, e := range es {
		out = append(out, QueuedRecipient{e.QueueID, e.MailFrom, e.Recipient.Address, e.State, e.Attempts, e.NextAttempt.UTC(), e.LastError, e.Held, e.Size, e.Created.UTC()})
	}
	writeJSON(w, http.StatusOK, struct {
		Recipients []QueuedRecipient `json:"recipients"`
	}{out})
}

// queueAction is POST /api/v1/queue/{id}/retry|hold|release.
func (a *api) queueAction(w http.ResponseWriter, r *http.Request, _ *caller) {
	id, action := r.PathValue("id"), r.PathValue("action")
	var n int
	var err error
	switch action {
	case "retry":
		n, err = a.Store.RetryNow(r.Context(), id)
	case "hold":
		n, err = a.Store.SetHeld(r.Context(), id, true)
	case "release":
		n, err = a.Store.SetHeld(r.Context(), id, false)
	default:
		writeError(w, http.StatusNotFound, "not_found", "The queue's actions are retry, hold and release (and DELETE to remove)")
		return
	}
	a.queueAnswer(w, err, id, action, n)
}

// deleteQueued is DELETE /api/v1/queue/{id}: its waiting recipients are
// removed, neither delivered nor bounced.
func (a *api) deleteQueued(w http.ResponseWriter, r *http.Request, _ *caller) {
	id := r.PathValue("id")
	n, err := a.Store.DeleteQueued(r.Context(), id)
	a.queueAnswer(w, err, id, "delete", n)
}

func (a *api) queueAnswer(w http.ResponseWriter, err error, id, action string, n int) {
	if err != nil {
		a.internal(w, "changing the queue", err)
		return
	}
	if n == 0 {
		writeError(w, http.StatusNotFound, "not_found", "No waiting recipient of "+id+" in the queue: see GET /api/v1/queue")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID         string `json:"id"`
		Action     string `json:"action"`
		Recipients int    `json:"recipients"`
	}{id, action, n})
}

// listSuppressions is GET /api/v1/suppressions.
func (a *api) listSuppressions(w http.ResponseWriter, r *http.Request, _ *caller) {
	ss, err := a.Store.SuppressionList(r.Context())
	if err != nil {
		a.internal(w, "reading the suppression list", err)
		return
	}
	if ss == nil {
		ss = []store.Suppression{}
	}
	writeJSON(w, http.StatusOK, struct {
		Suppressions []store.Suppression `json:"suppressions"`
	}{ss})
}

// addSuppression is POST /api/v1/suppressions: {"address", "reason",
// "days"} (days: 0 is a year).
func (a *api) addSuppression(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req struct {
		Address string `json:"address"`
		Reason  string `json:"reason"`
		Days    int    `json:"days"`
	}
	body, err := readSmall(w, r)
	if err != nil {
		return
	}
	if f := decode(body, &req); f != nil {
		writeFailure(w, f)
		return
	}
	ad, err := mail.ParseAddress(req.Address)
	if err != nil || ad.Name != "" {
		writeError(w, 400, "invalid_address", fmt.Sprintf("address %q is not an address like user@example.com", req.Address))
		return
	}
	if req.Days < 0 || req.Days > 3650 {
		writeError(w, 400, "invalid_parameter", "days is 0 (a year) to 3650")
		return
	}
	if req.Days == 0 {
		req.Days = 365
	}
	if req.Reason == "" {
		req.Reason = "added through the API"
	}
	if strings.ContainsFunc(req.Reason, unicode.IsControl) || len(req.Reason) > 200 {
		writeError(w, 400, "invalid_parameter", "reason is one line of up to 200 characters (it is quoted in SMTP replies)")
		return
	}
	now := time.Now()
	s := store.Suppression{Address: strings.ToLower(ad.Address), Reason: req.Reason, Created: now, Until: now.Add(time.Duration(req.Days) * 24 * time.Hour)}
	if err := a.Store.Suppress(r.Context(), s); err != nil {
		a.internal(w, "adding to the suppression list", err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

// deleteSuppression is DELETE /api/v1/suppressions/{address}.
func (a *api) deleteSuppression(w http.ResponseWriter, r *http.Request, _ *caller) {
	addr := strings.ToLower(r.PathValue("address"))
	if _, found, err := a.Store.Suppressed(r.Context(), addr, time.Now()); err != nil {
		a.internal(w, "reading the suppression list", err)
		return
	} else if !found {
		writeError(w, http.StatusNotFound, "not_found", addr+" is not on the suppression list")
		return
	}
	if err := a.Store.Unsuppress(r.Context(), addr); err != nil {
		if !notFound(w, err, addr+" is not on the suppression list") {
			a.internal(w, "changing the suppression list", err)
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readSmall reads a small JSON body (64 KiB at most).
func readSmall(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "The request is over 64 KiB, or could not be read")
		return nil, err
	}
	return b, nil
}
