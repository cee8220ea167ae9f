package dashboard

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"mailroom/internal/store"
)

func (h *dash) suppressions(w http.ResponseWriter, r *http.Request) {
	ss, err := h.Store.SuppressionList(r.Context())
	if err != nil {
		h.fail(w, "the suppression list", err)
		return
	}
	h.render(w, r, "suppressions", map[string]any{"List": ss, "Done": r.URL.Query().Get("done")}, http.StatusOK)
}

// lift takes an address off the suppression list.
func (h *dash) lift(w http.ResponseWriter, r *http.Request) {
	addr := strings.ToLower(strings.TrimSpace(r.PostFormValue("address")))
	if err := h.Store.Unsuppress(r.Context(), addr); err != nil {
		h.fail(w, "the suppression list", err)
		return
	}
	h.Log.Info("dashboard: suppression lifted", "user", viewerOf(r).User, "address", addr)
	http.Redirect(w, r, "/suppressions?done="+urlQuery(addr+" may be sent to again"), http.StatusSeeOther)
}

// Domain is a domain with its DNS check, when one was asked for.
type Domain struct {
	store.Domain
	Checked  bool
	Findings any
}

func (h *dash) domains(w http.ResponseWriter, r *http.Request) {
	h.renderDomains(w, r, "", nil)
}

// checkDNS checks one domain's records and shows them with the list.
func (h *dash) checkDNS(w http.ResponseWriter, r *http.Request) {
	d := strings.ToLower(r.PathValue("domain"))
	if h.CheckDomain == nil {
		http.Error(w, "DNS checks are not available here.", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	findings, err := h.CheckDomain(ctx, d)
	if err != nil {
		h.fail(w, "the domain's keys", err)
		return
	}
	h.renderDomains(w, r, d, findings)
}

func (h *dash) renderDomains(w http.ResponseWriter, r *http.Request, checked string, findings any) {
	ds, err := h.Store.Domains(r.Context())
	if err != nil {
		h.fail(w, "the domains", err)
		return
	}
	var out []Domain
	for _, d := range ds {
		x := Domain{Domain: d}
		if d.Name == checked {
			x.Checked, x.Findings = true, findings
		}
		out = append(out, x)
	}
	h.render(w, r, "domains", map[string]any{"Domains": out}, http.StatusOK)
}

// UserRow is a user with their app passwords.
type UserRow struct {
	store.User
	AppPasswords []store.AppPassword
}

func (h *dash) users(w http.ResponseWriter, r *http.Request) {
	us, err := h.Store.Users(r.Context(), "")
	if err != nil {
		h.fail(w, "the users", err)
		return
	}
	var rows []UserRow
	for _, u := range us[:min(len(us), 500)] {
		ps, err := h.Store.AppPasswords(r.Context(), u.Address)
		if err != nil {
			h.fail(w, "the app passwords", err)
			return
		}
		rows = append(rows, UserRow{u, ps})
	}
	h.render(w, r, "users", map[string]any{"Users": rows, "Total": len(us)}, http.StatusOK)
}

func (h *dash) keys(w http.ResponseWriter, r *http.Request) {
	ks, err := h.Store.APIKeys(r.Context(), "")
	if err != nil {
		h.fail(w, "the API keys", err)
		return
	}
	h.render(w, r, "keys", map[string]any{"Keys": ks, "Done": r.URL.Query().Get("done")}, http.StatusOK)
}

// revoke revokes an API key at once.
func (h *dash) revoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := h.Store.DeleteAPIKey(r.Context(), id); err != nil && !errors.Is(err, store.ErrNotFound) {
		h.fail(w, "the API keys", err)
		return
	}
	h.Log.Info("dashboard: API key revoked", "user", viewerOf(r).User, "key", id)
	http.Redirect(w, r, "/keys?done="+urlQuery("API key "+id+" revoked"), http.StatusSeeOther)
}

// HookRow is a webhook with its latest deliveries.
type HookRow struct {
	store.Webhook
	Deliveries []store.HookDelivery
}

func (h *dash) webhooks(w http.ResponseWriter, r *http.Request) {
	hs, err := h.Store.Webhooks(r.Context(), "")
	if err != nil {
		h.fail(w, "the webhooks", err)
		return
	}
	var rows []HookRow
	for _, x := range hs {
		ds, err := h.Store.HookDeliveries(r.Context(), x.ID, "", 10)
		if err != nil {
			h.fail(w, "the webhook deliveries", err)
			return
		}
		rows = append(rows, HookRow{x, ds})
	}
	h.render(w, r, "webhooks", map[string]any{"Hooks": rows}, http.StatusOK)
}
