package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// printReport aggregates RESULT lines (several runs per engine/writers pair)
// into a markdown table: min/median/max commits per second, median p99.
func printReport(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type key struct {
		engine  string
		writers int
	}
	groups := map[key][]map[string]string{}
	var order []key
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "RESULT ") {
			continue
		}
		kv := map[string]string{}
		for _, field := range strings.Fields(line)[1:] {
			if k, v, ok := strings.Cut(field, "="); ok {
				kv[k] = v
			}
		}
		w, _ := strconv.Atoi(kv["writers"])
		k := key{kv["engine"], w}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], kv)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Println("| engine | writers | n | runs | commits/s min | median | max | p99 ms (median) | p50 ms (median) | avg batch | device flushes/batch | device KiB written/msg | CPU µs/commit |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range order {
		rs := groups[k]
		num := func(kv map[string]string, f string) float64 {
			v, _ := strconv.ParseFloat(kv[f], 64)
			return v
		}
		col := func(f string) []float64 {
			var out []float64
			for _, r := range rs {
				out = append(out, num(r, f))
			}
			sort.Float64s(out)
			return out
		}
		// per-run derived ratios, median over runs; "-" when unknown
		derived := func(fn func(r map[string]string) (float64, bool), format string) string {
			var out []float64
			for _, r := range rs {
				if v, ok := fn(r); ok {
					out = append(out, v)
				}
			}
			if len(out) == 0 {
				return "-"
			}
			sort.Float64s(out)
			return fmt.Sprintf(format, median(out))
		}
		avgBatch := derived(func(r map[string]string) (float64, bool) {
			b := num(r, "batches")
			return num(r, "n") / b, b > 0
		}, "%.1f")
		flushPerBatch := derived(func(r map[string]string) (float64, bool) {
			b, fl := num(r, "batches"), num(r, "devflushes")
			if b <= 0 { // no batching notion: per commit
				b = num(r, "n")
			}
			return fl / b, fl >= 0
		}, "%.2f")
		kibPerMsg := derived(func(r map[string]string) (float64, bool) {
			kb := num(r, "devkib")
			return kb / num(r, "n"), kb >= 0
		}, "%.1f")
		cpu := derived(func(r map[string]string) (float64, bool) {
			_, ok := r["cpuus"]
			return num(r, "cpuus"), ok
		}, "%.0f")
		cps := col("cps")
		fmt.Printf("| %s | %d | %s | %d | %.0f | %.0f | %.0f | %.2f | %.2f | %s | %s | %s | %s |\n",
			k.engine, k.writers, rs[0]["n"], len(rs), cps[0], median(cps), cps[len(cps)-1],
			median(col("p99ms")), median(col("p50ms")), avgBatch, flushPerBatch, kibPerMsg, cpu)
	}
	return nil
}

func median(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
