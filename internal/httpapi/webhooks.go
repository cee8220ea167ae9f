package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/webhook"
)

// hookOwner is whose webhooks a caller manages: its domain's, or (a
// server key) the server's.
func (c *caller) hookOwner() string {
	if c.domains == nil {
		return "*"
	}
	return "@" + c.domains[0]
}

// webhookOf reads a webhook the caller may manage, or answers 404.
func (a *api) webhookOf(w http.ResponseWriter, r *http.Request, c *caller) (store.Webhook, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "No such webhook: see GET /api/v1/webhooks")
		return store.Webhook{}, false
	}
	h, err := a.Store.Webhook(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || err == nil && c.domains != nil && h.Owner != c.hookOwner() {
		writeError(w, http.StatusNotFound, "not_found", "No such webhook of this key's domain: see GET /api/v1/webhooks")
		return h, false
	}
	if err != nil {
		a.internal(w, "reading a webhook", err)
		return h, false
	}
	return h, true
}

// listWebhooks is GET /api/v1/webhooks.
func (a *api) listWebhooks(w http.ResponseWriter, r *http.Request, c *caller) {
	owner := ""
	if c.domains != nil {
		owner = c.hookOwner()
	}
	hs, err := a.Store.Webhooks(r.Context(), owner)
	if err != nil {
		a.internal(w, "reading webhooks", err)
		return
	}
	if hs == nil {
		hs = []store.Webhook{}
	}
	writeJSON(w, http.StatusOK, struct {
		Webhooks []store.Webhook `json:"webhooks"`
	}{hs})
}

// addWebhook is POST /api/v1/webhooks: {"url", "events", "domain"
// (server keys: one domain's events; else every domain's)}; the answer
// holds the signing secret, shown this once.
func (a *api) addWebhook(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
		Domain string   `json:"domain"`
	}
	body, err := readSmall(w, r)
	if err != nil {
		return
	}
	if f := decode(body, &req); f != nil {
		writeFailure(w, f)
		return
	}
	h := store.Webhook{Owner: c.hookOwner(), URL: req.URL, Events: req.Events, Secrets: []string{webhook.NewSecret()}, Created: time.Now()}
	if req.Domain != "" {
		if c.domains != nil && "@"+strings.ToLower(req.Domain) != h.Owner {
			writeError(w, http.StatusForbidden, "forbidden", "This key manages the webhooks of its own domain only")
			return
		}
		h.Owner = "@" + strings.ToLower(req.Domain)
		if _, err := a.Store.Domain(r.Context(), h.Owner[1:]); err != nil {
			if !notFound(w, err, "No domain "+h.Owner[1:]+" on this server") {
				a.internal(w, "reading the domain", err)
			}
			return
		}
	}
	if err := webhook.Check(h); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_webhook", err.Error())
		return
	}
	h, err = a.Store.AddWebhook(r.Context(), h)
	if err != nil {
		a.internal(w, "adding a webhook", err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		store.Webhook
		Secret string `json:"secret"`
	}{h, h.Secrets[0]})
}

// deleteWebhook is DELETE /api/v1/webhooks/{id}.
func (a *api) deleteWebhook(w http.ResponseWriter, r *http.Request, c *caller) {
	h, ok := a.webhookOf(w, r, c)
	if !ok {
		return
	}
	if err := a.Store.DeleteWebhook(r.Context(), h.ID); err != nil && !notFound(w, err, "No such webhook") {
		a.internal(w, "deleting a webhook", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rotateWebhook is POST /api/v1/webhooks/{id}/rotate: a new secret signs
// from now on beside the current one (both signatures are sent) until the
// next rotation drops the older.
func (a *api) rotateWebhook(w http.ResponseWriter, r *http.Request, c *caller) {
	h, ok := a.webhookOf(w, r, c)
	if !ok {
		return
	}
	secrets, secret := webhook.Rotate(h)
	if err := a.Store.SetWebhookSecrets(r.Context(), h.ID, secrets); err != nil {
		a.internal(w, "rotating a webhook's secret", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID     int64  `json:"id"`
		Secret string `json:"secret"`
	}{h.ID, secret})
}

// hookDeliveries is GET /api/v1/webhooks/{id}/deliveries?state=.
func (a *api) hookDeliveries(w http.ResponseWriter, r *http.Request, c *caller) {
	h, ok := a.webhookOf(w, r, c)
	if !ok {
		return
	}
	limit, f := limitParam(r.URL.Query())
	if f != nil {
		writeFailure(w, f)
		return
	}
	ds, err := a.Store.HookDeliveries(r.Context(), h.ID, r.URL.Query().Get("state"), limit)
	if err != nil {
		a.internal(w, "reading webhook deliveries", err)
		return
	}
	if ds == nil {
		ds = []store.HookDelivery{}
	}
	writeJSON(w, http.StatusOK, struct {
		Deliveries []store.HookDelivery `json:"deliveries"`
	}{ds})
}

// hookAttempts is GET /api/v1/webhooks/{id}/deliveries/{delivery}/attempts.
func (a *api) hookAttempts(w http.ResponseWriter, r *http.Request, c *caller) {
	d, ok := a.deliveryOf(w, r, c)
	if !ok {
		return
	}
	as, err := a.Store.HookAttempts(r.Context(), d)
	if err != nil {
		a.internal(w, "reading webhook attempts", err)
		return
	}
	if as == nil {
		as = []store.HookAttempt{}
	}
	writeJSON(w, http.StatusOK, struct {
		Attempts []store.HookAttempt `json:"attempts"`
	}{as})
}

// retryDelivery is POST /api/v1/webhooks/{id}/deliveries/{delivery}/retry.
func (a *api) retryDelivery(w http.ResponseWriter, r *http.Request, c *caller) {
	d, ok := a.deliveryOf(w, r, c)
	if !ok {
		return
	}
	if err := a.Store.RetryHookDelivery(r.Context(), d, time.Now()); err != nil {
		if !notFound(w, err, "No such delivery waiting or failed (a delivered one is not sent again)") {
			a.internal(w, "retrying a webhook delivery", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
	}{d, store.HookPending})
}

// deliveryOf reads the {delivery} of a path's webhook the caller manages,
// or answers 404.
func (a *api) deliveryOf(w http.ResponseWriter, r *http.Request, c *caller) (int64, bool) {
	h, ok := a.webhookOf(w, r, c)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(r.PathValue("delivery"), 10, 64)
	if err == nil {
		ds, err2 := a.Store.HookDeliveries(r.Context(), h.ID, "", 1000)
		if err2 != nil {
			a.internal(w, "reading webhook deliveries", err2)
			return 0, false
		}
		for _, d := range ds {
			if d.ID == id {
				return id, true
			}
		}
	}
	writeError(w, http.StatusNotFound, "not_found", "No such delivery of this webhook (among its latest 1,000)")
	return 0, false
}
