package dmarcreport

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/tally"
)

func TestDestinations(t *testing.T) {
	got := Destinations([]string{"mailto:a@example.com", " mailto:b@example.net!10m", "https://example.org/", "mailto:bad address",
		"mailto:c@example.org!2k", "mailto:a@example.com", "mailto:d@example.org!x"})
	want := []Destination{{"a@example.com", 0}, {"b@example.net", 10 << 20}, {"c@example.org", 2 << 10}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Destinations = %v, want %v", got, want)
	}
}

// TestBuildParse: the report we write is read back by Parse (as another
// Mailroom reads it) with its rows and counts.
func TestBuildParse(t *testing.T) {
	begin := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	rows := []Row{
		{SourceIP: "192.0.2.1", HeaderFrom: "example.com", Disposition: "none", DKIM: "pass", SPF: "fail", P: "reject", Pct: 100,
			DKIMAuth: []Auth{{Domain: "example.com", Result: "pass"}}, SPFAuth: Auth{Domain: "other.example", Scope: "mfrom", Result: "pass"}},
		{SourceIP: "198.51.100.7", HeaderFrom: "example.com", Disposition: "reject", DKIM: "fail", SPF: "fail", P: "reject", Pct: 100,
			SPFAuth: Auth{Domain: "example.com", Scope: "mfrom", Result: "fail"}},
	}
	rep := tally.Report{Domain: "example.com", Begin: begin, End: begin.Add(24 * time.Hour)}
	for i, r := range rows {
		k, _ := json.Marshal(r)
		rep.Rows = append(rep.Rows, store.Tally{Kind: store.TallyDMARC, Period: begin, Domain: "example.com", Key: string(k), Count: int64(3 + i)})
	}
	aggs, err := Build("mx.example.net", "postmaster@example.net", rep)
	if err != nil || len(aggs) != 1 {
		t.Fatalf("Build: %d reports, %v", len(aggs), err)
	}
	a := aggs[0]
	a.ReportID = "r-1"
	gz, err := a.Gzip()
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := gzip.NewReader(bytes.NewReader(gz))
	got, err := Parse(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got.Org != "mx.example.net" || got.ReportID != "r-1" || got.Domain != "example.com" || got.Policy != "reject" ||
		!got.Begin.Equal(begin) || len(got.Rows) != 2 {
		t.Fatalf("Parse(Build()) = %+v", got)
	}
	if r := got.Rows[1]; r.SourceIP != "198.51.100.7" || r.Count != 4 || r.Disposition != "reject" || r.SPFDomain != "example.com" {
		t.Errorf("second row = %+v", r)
	}
	if total, passed := got.Messages(); total != 7 || passed != 3 {
		t.Errorf("Messages() = %d, %d; want 7, 3", total, passed)
	}
}
