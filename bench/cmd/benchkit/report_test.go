package main

import (
	"strings"
	"testing"
)

func TestSummaryCell(t *testing.T) {
	tests := []struct {
		name   string
		s      summary
		want   string
		median float64
	}{
		{"one run shows its value alone", summary{values: []float64{812.4}, unit: "msg/s"}, "812", 812.4},
		{"three runs show the median with min and max", summary{values: []float64{600, 650.2, 1710}, unit: "msg/s"}, "650 (600–1,710)", 650.2},
		{"an even count takes the mean of the middle two", summary{values: []float64{1, 2, 4, 8}, unit: "ms"}, "3.00 (1.00–8.00)", 3},
		{"failed runs are counted beside the others", summary{values: []float64{10.5}, failed: 2, unit: "kB PSS/conn"}, "10.5 [2 failed]", 10.5},
		{"no successful run reads as failed", summary{failed: 1, unit: "msg/s"}, "failed", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.cell(); got != tt.want {
				t.Errorf("cell() = %q, want %q", got, tt.want)
			}
			if got := tt.s.median(); len(tt.s.values) > 0 && got != tt.median {
				t.Errorf("median() = %v, want %v", got, tt.median)
			}
		})
	}
}

func TestReportTable(t *testing.T) {
	tests := []struct {
		name string
		raw  []string // raw result lines, tab-separated
		want []string // lines the report must contain
	}{
		{"Mailroom and Postfix against the ceiling, with a failed run and a note", []string{
			"1\tceiling, C=50\tmsg/s\t-\treference\t5000\tok",
			"1\taccept, relayed domain, C=50\tmsg/s\tceiling, C=50\tmailroom\t2000\tok\tpeak RSS 40 MB",
			"1\taccept, relayed domain, C=50\tmsg/s\tceiling, C=50\tpostfix\t500\tok",
			"2\taccept, relayed domain, C=50\tmsg/s\tceiling, C=50\tpostfix\t0\tfail\tsmtp-source exit 1",
			"1\tidle connections\tkB PSS/conn\t-\tmailroom\t12.5\tok",
		}, []string{
			"| accept, relayed domain, C=50 | msg/s | 2,000 | 500 [1 failed] | 4.00× | ceiling, C=50: 5,000 | 0.40× | 0.10× |",
			"| idle connections | kB PSS/conn | 12.5 | not run | – | – | – | – |",
			"| ceiling, C=50 | msg/s | 5,000 |",
			"- run 2, accept, relayed domain, C=50, postfix: smtp-source exit 1",
			"- run 1, accept, relayed domain, C=50, mailroom: peak RSS 40 MB",
		}},
		{"the durable sink's columns once it ran, a dash where it did not", []string{
			"1\tceiling, C=50\tmsg/s\t-\treference\t5000\tok",
			"1\taccept, local mailbox, C=50\tmsg/s\tceiling, C=50\tmailroom\t2000\tok",
			"1\taccept, local mailbox, C=50\tmsg/s\tceiling, C=50\tpostfix\t500\tok",
			"1\taccept, local mailbox, C=50\tmsg/s\tceiling, C=50\tdurable\t2500\tok",
			"1\tend to end, relayed domain, C=50\tmsg/s\tceiling, C=50\tmailroom\t1000\tok",
		}, []string{
			"| figure | unit | Mailroom | Postfix | Mailroom / Postfix | durable sink | Mailroom / durable sink | reference |",
			"| accept, local mailbox, C=50 | msg/s | 2,000 | 500 | 4.00× | 2,500 | 0.80× | ceiling, C=50: 5,000 | 0.40× | 0.10× |",
			"| end to end, relayed domain, C=50 | msg/s | 1,000 | not run | – | – | – | ceiling, C=50: 5,000 | 0.20× | – |",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, err := parseResults(strings.NewReader(strings.Join(tt.raw, "\n")))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			summarise(results).write(&b)
			out := b.String()
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("the report lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
