package store

import "strings"

// HookFanOutSQL is the statement that makes the deliveries of the events
// cond selects (a condition over events e) to every webhook that takes
// them: one per event kind subscribed, and one "inbound" per message
// received from outside (at its first local recipient's event) by a
// webhook that takes inbound mail. ph(1) is the
// time (unix nanoseconds) the deliveries are made and due at; cond's
// parameters come after it. position names the backend's function of
// (string, substring) that is 0 when the substring is not in the string
// (SQLite's instr, PostgreSQL's strpos).
func HookFanOutSQL(ph func(int) string, position, cond string) string {
	now := "CAST(" + ph(1) + " AS bigint)" // a type PostgreSQL cannot infer in a UNION
	owns := `(w.owner = '*' OR w.owner = '@' || e.domain)`
	return `INSERT INTO hook_deliveries(webhook_id, event_id, kind, state, next_attempt, created)
		SELECT w.id, e.id, e.kind, 'pending', ` + now + `, ` + now + ` FROM events e JOIN webhooks w ON ` + owns + `
			AND ` + position + `(w.events, ',' || e.kind || ',') > 0 WHERE ` + cond + `
		UNION ALL
		SELECT w.id, e.id, 'inbound', 'pending', ` + now + `, ` + now + ` FROM events e JOIN webhooks w ON ` + owns + `
			AND ` + position + `(w.events, ',inbound,') > 0
			JOIN message_log l ON l.queue_id = e.queue_id AND l.direction = 'inbound'
			WHERE e.kind = 'received' AND ` + cond + `
				AND e.id = (SELECT min(e2.id) FROM events e2 WHERE e2.queue_id = e.queue_id AND e2.kind = 'received')`
}

// HookEvents is how a webhook's event kinds are kept: between commas, so
// that one can be found with a search for ",kind,".
func HookEvents(kinds []string) string { return "," + strings.Join(kinds, ",") + "," }

// HookEventList is the reverse of HookEvents.
func HookEventList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
}
