package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// idempotencyLease is how long a request under way holds its key: one
// that never finished (the server stopped) frees it after this. It is
// longer than workTimeout, the most a sending request may take once read.
const (
	idempotencyLease = 15 * time.Minute
	workTimeout      = 10 * time.Minute
)

// idempotent reads the request's body and answers it with do, once per
// Idempotency-Key: the same key with the same request replays the first
// answer (Idempotent-Replayed: true), with another request is refused
// (422), and while the first is under way is refused as a conflict (409).
// Temporary failures (5xx) are not kept: the client may try again.
func (a *api) idempotent(w http.ResponseWriter, r *http.Request, c *caller, do func(body []byte) (int, any)) {
	select { // a place among the sending requests
	case a.sending <- struct{}{}:
		defer func() { <-a.sending }()
	case <-r.Context().Done():
		return
	}
	// The server's read and write timeouts fit small requests; a large
	// message gets two minutes to arrive, a batch its time to be taken.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(2 * time.Minute))
	rc.SetWriteDeadline(time.Now().Add(2*time.Minute + workTimeout))
	limit := a.Config().MaxMessageSize*4/3 + 1<<20 // base64 in JSON, and the rest of it
	if r.URL.Path == "/api/v1/messages/batch" {
		limit *= 2
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("The request is over %d bytes", limit))
			return
		}
		writeError(w, http.StatusBadRequest, "unreadable_request", "The request's body could not be read: "+err.Error())
		return
	}
	// Once read, the request is done to the end whatever the client does:
	// a message half-sent, or sent and not recorded as such, is what an
	// idempotency key is for.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), workTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		status, v := do(body)
		writeJSON(w, status, v)
		return
	}
	if len(key) > 255 || !printableASCII(key) {
		writeError(w, http.StatusBadRequest, "invalid_idempotency_key", "An Idempotency-Key is 1 to 255 printable ASCII characters (a UUID, say)")
		return
	}
	sum := sha256.Sum256(append([]byte(r.Method+" "+r.URL.RequestURI()+"\n"), body...))
	hash := hex.EncodeToString(sum[:])
	st, err := a.Store.BeginIdempotent(r.Context(), c.key.ID, key, hash, time.Now(), idempotencyLease)
	if err != nil {
		a.internal(w, "idempotency key", err)
		return
	}
	switch {
	case !st.Began && st.Request != hash:
		writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused", "This Idempotency-Key was used with another request: use a new key for a new request")
		return
	case !st.Began && st.Status == 0:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusConflict, "request_in_progress", "A request with this Idempotency-Key is under way: ask again shortly for its answer")
		return
	case !st.Began:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(st.Status)
		w.Write(st.Response)
		return
	}
	status, v := do(body)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
	keep := status
	if status >= 500 || status == http.StatusTooManyRequests {
		keep = 0 // temporary: released, the same request may be made again at once
	}
	if err := a.Store.FinishIdempotent(r.Context(), c.key.ID, key, keep, buf.Bytes()); err != nil {
		a.Log.Error("HTTP API: recording an idempotent request's answer (a retry within the lease gets 409)", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// decode reads a JSON body into v, refusing unknown fields (a typo in a
// field name would otherwise send a message without what was meant).
func decode(body []byte, v any) *failure {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "invalid_json", "The body is not the JSON this endpoint takes: "+err.Error())
	}
	if dec.More() {
		return fail(http.StatusBadRequest, "invalid_json", "The body holds more than one JSON value")
	}
	return nil
}
