package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A result is one raw line of bench/run.sh, tab-separated:
//
//	run  figure  unit  reference  server  value  status  note
//
// figure names what was measured ("accept, relayed domain, C=50"); server is
// mailroom, postfix, durable (benchkit sink -durable, the least a durable
// server does) or reference (the load generator's ceiling, the disk's fsync
// latency); reference names the reference figure a server's figure is
// read against, or "-"; status is ok or fail.
type result struct {
	run, figure, unit, ref, server string
	value                          float64
	ok                             bool
	note                           string
}

func parseResults(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 7 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 7: %q", line, len(f), text)
		}
		v, err := strconv.ParseFloat(f[5], 64)
		if err != nil {
			v = math.NaN()
		}
		res := result{run: f[0], figure: f[1], unit: f[2], ref: f[3], server: f[4], value: v,
			ok: f[6] == "ok" && err == nil}
		if len(f) > 7 {
			res.note = strings.Join(f[7:], " ")
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// summary is what the runs of one figure on one server came to.
type summary struct {
	values []float64 // the successful runs, sorted
	failed int
	unit   string
}

func (s summary) median() float64 {
	n := len(s.values)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return s.values[n/2]
	default:
		return (s.values[n/2-1] + s.values[n/2]) / 2
	}
}

// cell is "median (min–max)", the value alone for one run, and says how
// many runs failed.
func (s summary) cell() string {
	var c string
	switch len(s.values) {
	case 0:
		c = "failed"
	case 1:
		c = formatValue(s.values[0], s.unit)
	default:
		c = fmt.Sprintf("%s (%s–%s)", formatValue(s.median(), s.unit),
			formatValue(s.values[0], s.unit), formatValue(s.values[len(s.values)-1], s.unit))
	}
	if s.failed > 0 && len(s.values) > 0 {
		c += fmt.Sprintf(" [%d failed]", s.failed)
	}
	return c
}

func formatValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "?"
	case unit == "msg/s":
		return thousands(int64(math.Round(v)))
	case unit == "ms":
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// ratio is a/b as "1.23×", or "–" when either is missing.
func ratio(a, b summary) string {
	x, y := a.median(), b.median()
	if math.IsNaN(x) || math.IsNaN(y) || y == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/y)
}

// table is the summarised results, in the order figures first appeared.
type table struct {
	figures    []string // measured on the servers
	references []string
	refOf      map[string]string
	cells      map[[2]string]summary // figure, server
	failures   []result
	notes      []result
}

func summarise(results []result) table {
	t := table{refOf: map[string]string{}, cells: map[[2]string]summary{}}
	for _, r := range results {
		key := [2]string{r.figure, r.server}
		s, seen := t.cells[key]
		if !seen {
			if _, known := t.refOf[r.figure]; !known {
				if r.server == "reference" {
					t.references = append(t.references, r.figure)
				} else {
					t.figures = append(t.figures, r.figure)
				}
				t.refOf[r.figure] = r.ref
			}
			s.unit = r.unit
		}
		if r.ok {
			s.values = append(s.values, r.value)
			slices.Sort(s.values)
		} else {
			s.failed++
			t.failures = append(t.failures, r)
		}
		if r.note != "" && r.ok {
			t.notes = append(t.notes, r)
		}
		t.cells[key] = s
	}
	return t
}

// hasServer reports whether any figure was measured on server.
func (t table) hasServer(server string) bool {
	for k := range t.cells {
		if k[1] == server {
			return true
		}
	}
	return false
}

func (t table) write(w io.Writer) {
	// The durable sink's columns only when it ran.
	durable := t.hasServer("durable")
	if durable {
		fmt.Fprintln(w, "| figure | unit | Mailroom | Postfix | Mailroom / Postfix | durable sink | Mailroom / durable sink | reference | Mailroom / reference | Postfix / reference |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	} else {
		fmt.Fprintln(w, "| figure | unit | Mailroom | Postfix | Mailroom / Postfix | reference | Mailroom / reference | Postfix / reference |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	}
	for _, f := range t.figures {
		m, mok := t.cells[[2]string{f, "mailroom"}]
		p, pok := t.cells[[2]string{f, "postfix"}]
		unit := m.unit
		if !mok {
			unit = p.unit
		}
		if unit == "" {
			unit = t.cells[[2]string{f, "durable"}].unit
		}
		mc, pc := "not run", "not run"
		if mok {
			mc = m.cell()
		}
		if pok {
			pc = p.cell()
		}
		refName, refCell, mRef, pRef := "–", "", "–", "–"
		if ref, ok := t.cells[[2]string{t.refOf[f], "reference"}]; ok {
			refName = t.refOf[f]
			refCell = ": " + ref.cell()
			mRef, pRef = ratio(m, ref), ratio(p, ref)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |", f, unit, mc, pc, ratio(m, p))
		if durable {
			dc := "–"
			d, dok := t.cells[[2]string{f, "durable"}]
			if dok {
				dc = d.cell()
			}
			fmt.Fprintf(w, " %s | %s |", dc, ratio(m, d))
		}
		fmt.Fprintf(w, " %s%s | %s | %s |\n", refName, refCell, mRef, pRef)
	}
	if len(t.references) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| reference | unit | value |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, f := range t.references {
			s := t.cells[[2]string{f, "reference"}]
			fmt.Fprintf(w, "| %s | %s | %s |\n", f, s.unit, s.cell())
		}
	}
	if len(t.failures) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Failed runs (left out of the medians):")
		fmt.Fprintln(w)
		for _, r := range t.failures {
			fmt.Fprintf(w, "- run %s, %s, %s: %s\n", r.run, r.figure, r.server, orDash(r.note))
		}
	}
	if len(t.notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Notes per run:")
		fmt.Fprintln(w)
		for _, r := range t.notes {
			fmt.Fprintf(w, "- run %s, %s, %s: %s\n", r.run, r.figure, r.server, r.note)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// runReport prints the markdown table for a raw results file.
func runReport(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: benchkit report RAW-RESULTS-FILE")
		return errUsage
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := parseResults(f)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	summarise(results).write(os.Stdout)
	return nil
}
