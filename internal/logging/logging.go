// Package logging builds Mailroom's structured logger (log/slog): text or
// JSON lines on standard error, at a level that can change while it runs.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel reads "debug", "info", "warn" or "error".
func ParseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return lv, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return lv, nil
}

// New returns a logger writing format ("text" or "json") at level, and the
// level, which SIGHUP may change.
func New(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	v := new(slog.LevelVar)
	v.Set(lv)
	opts := &slog.HandlerOptions{Level: v}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), v, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), v, nil
	}
	return nil, nil, fmt.Errorf("log format %q: use text or json", format)
}
