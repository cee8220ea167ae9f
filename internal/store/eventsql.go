package store

import (
	"strconv"
	"strings"
	"time"
)

// Dialect is how a backend's SQL spells what the event queries need, so
// that both backends build them here, once.
type Dialect struct {
	// Placeholder is the n-th parameter (from 1): "?" or "$n".
	Placeholder func(n int) string
	// ILike is the operator of a case-insensitive LIKE.
	ILike string
	// HasTag is the condition that the tags column (a JSON array) holds
	// the parameter ph.
	HasTag func(ph string) string
}

// sqlWhere collects the conditions of a query and their arguments.
type sqlWhere struct {
	d     Dialect
	conds []string
	args  []any
}

// add adds a condition in which each "?" stands for the next argument.
func (w *sqlWhere) add(cond string, args ...any) {
	var b strings.Builder
	for _, a := range args {
		i := strings.IndexByte(cond, '?')
		b.WriteString(cond[:i])
		w.args = append(w.args, a)
		b.WriteString(w.d.Placeholder(len(w.args)))
		cond = cond[i+1:]
	}
	b.WriteString(cond)
	w.conds = append(w.conds, b.String())
}

// in adds "col IN (...)" for a scope of domains (nil: no condition; empty:
// nothing matches).
func (w *sqlWhere) in(col string, values []string) {
	if values == nil {
		return
	}
	if len(values) == 0 {
		w.conds = append(w.conds, "1 = 0")
		return
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", ")
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	w.add(col+" IN ("+marks+")", args...)
}

func (w *sqlWhere) String() string {
	if len(w.conds) == 0 {
		return "1 = 1"
	}
	return strings.Join(w.conds, " AND ")
}

func limitOf(n int) int {
	if n <= 0 {
		return 100
	}
	return min(n, 1000)
}

// SQL returns the WHERE condition of q over the events table, its
// arguments, and the limit (at most 1,000).
func (q EventQuery) SQL(d Dialect) (string, []any, int) {
	w := &sqlWhere{d: d}
	if q.QueueID != "" {
		w.add("queue_id = ?", q.QueueID)
	}
	if q.Recipient != "" {
		w.add("recipient = ?", strings.ToLower(q.Recipient))
	}
	if q.Kind != "" {
		w.add("kind = ?", q.Kind)
	}
	w.in("domain", q.Domains)
	if !q.Since.IsZero() {
		w.add("time >= ?", q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		w.add("time < ?", q.Until.UnixNano())
	}
	if q.Before > 0 {
		w.add("id < ?", q.Before)
	}
	return w.String(), w.args, limitOf(q.Limit)
}

// SQL returns the WHERE condition of q over the message_log table, its
// arguments, and the limit (at most 1,000).
func (q MessageQuery) SQL(d Dialect) (string, []any, int) {
	w := &sqlWhere{d: d}
	if q.QueueID != "" {
		w.add("queue_id = ?", q.QueueID)
	}
	if q.Recipient != "" {
		w.add("queue_id IN (SELECT queue_id FROM events WHERE recipient = ?)", strings.ToLower(q.Recipient))
	}
	if q.Sender != "" {
		w.add("sender = ?", q.Sender)
	}
	if q.Subject != "" {
		w.add("subject "+d.ILike+" ? ESCAPE '\\'", "%"+likeEscaper.Replace(q.Subject)+"%")
	}
	if q.Tag != "" {
		w.args = append(w.args, q.Tag)
		w.conds = append(w.conds, d.HasTag(d.Placeholder(len(w.args))))
	}
	if q.Status != "" {
		w.add(StatusSQL+" = ?", q.Status)
	}
	if q.Direction != "" {
		w.add("direction = ?", q.Direction)
	}
	w.in("domain", q.Domains)
	if !q.Since.IsZero() {
		w.add("created >= ?", q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		w.add("created < ?", q.Until.UnixNano())
	}
	if !q.Before.IsZero() {
		w.add("created < ?", q.Before.UnixNano())
	}
	return w.String(), w.args, limitOf(q.Limit)
}

// StatusSQL is a logged message's status in SQL over message_log: the
// kind of its latest event (through the index on events' queue_id and id),
// read when asked rather than written with every event.
const StatusSQL = `coalesce((SELECT e.kind FROM events e WHERE e.queue_id = message_log.queue_id ORDER BY e.id DESC LIMIT 1), '')`

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SQL returns the query of q's counts: rows of (period start in unix
// minutes, kind, count), by period then kind.
func (q CountQuery) SQL(d Dialect) (string, []any) {
	w := &sqlWhere{d: d}
	w.add("tag = ?", q.Tag)
	w.in("domain", q.Domains)
	if !q.Since.IsZero() {
		w.add("minute >= ?", q.Since.Unix()/60)
	}
	if !q.Until.IsZero() {
		w.add("minute < ?", (q.Until.Unix()+59)/60)
	}
	step := strconv.FormatInt(q.StepMinutes(), 10)
	return "SELECT (minute / " + step + ") * " + step + " AS period, kind, sum(count) FROM event_counts WHERE " + w.String() +
		" GROUP BY period, kind ORDER BY period, kind", w.args
}

// MinuteTime is the start of a unix minute.
func MinuteTime(m int64) time.Time { return time.Unix(m*60, 0) }
