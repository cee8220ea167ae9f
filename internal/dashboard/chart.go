package dashboard

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// drawChart writes rows as an SVG line chart: one line per kind (colour
// and dash pattern both tell them apart), the largest value on the axis, a
// legend, and a title and description for screen readers.
func drawChart(w io.Writer, rows []Row, label string) {
	const width, height, left, bottom, top, right = 720, 260, 48, 28, 16, 12
	var peak int64 = 1
	for _, r := range rows {
		for _, k := range chartKinds {
			peak = max(peak, r.Counts[k.Kind])
		}
	}
	plotW, plotH := float64(width-left-right), float64(height-top-bottom)
	x := func(i int) float64 {
		if len(rows) < 2 {
			return float64(left)
		}
		return float64(left) + plotW*float64(i)/float64(len(rows)-1)
	}
	y := func(v int64) float64 { return float64(top) + plotH*(1-float64(v)/float64(peak)) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-labelledby="t d">`, width, height)
	fmt.Fprintf(&b, `<title id="t">Messages, %s</title><desc id="d">Accepted, delivered, deferred and bounced messages; at most %d in one period. The table below the chart has the figures.</desc>`, html.EscapeString(label), peak)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`, width, height)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>`,
		left, top, left, height-bottom, left, height-bottom, width-right, height-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" font-family="sans-serif">%d</text>`, left-4, top+4, peak)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" font-family="sans-serif">0</text>`, left-4, height-bottom)
	if len(rows) > 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" font-family="sans-serif">%s</text>`, left, height-8, rows[0].Time.UTC().Format("Jan 2 15:04"))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" font-family="sans-serif">%s UTC</text>`, width-right, height-8, rows[len(rows)-1].Time.UTC().Format("Jan 2 15:04"))
	}
	for li, k := range chartKinds {
		var pts []string
		for i, r := range rows {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(r.Counts[k.Kind])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"><title>%s</title></polyline>`, k.Colour, k.Dash, strings.Join(pts, " "), k.Kind)
		lx := left + 10 + li*130
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3" stroke-dasharray="%s"/>`, lx, top+2, lx+24, top+2, k.Colour, k.Dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" font-family="sans-serif">%s</text>`, lx+30, top+6, k.Kind)
	}
	b.WriteString(`</svg>`)
	io.WriteString(w, b.String())
}
