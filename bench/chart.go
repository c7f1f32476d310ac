package main

// A grouped bar chart as hand-written SVG: no plotting dependency for one
// picture that the README shows.

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// chart is a grouped bar chart of ratios: one group per measurement, one bar
// per series; a NaN value draws no bar.
type chart struct {
	Title    string
	YLabel   string
	Series   []string
	Groups   []chartGroup
	RefValue float64 // a dashed line at this value (e.g. 1: as fast as the peer); 0 for none
	RefLabel string
}

type chartGroup struct {
	Label  string
	Values []float64 // by series
}

// Series colours, colour-blind safe (Okabe-Ito).
func seriesColor(i int) string {
	palette := []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"}
	return palette[i%len(palette)]
}

// writeSVG draws c.
func writeSVG(w io.Writer, c chart) error {
	const (
		barW     = 22.0
		barGap   = 4.0
		groupGap = 28.0
		left     = 64.0
		right    = 24.0
		top      = 70.0
		bottom   = 96.0
		plotH    = 300.0
	)
	// Text is sized at about 7 px a character, so that group labels do not
	// run into each other and the title fits.
	const charW = 7.0
	nSeries := max(len(c.Series), 1)
	barsW := float64(nSeries)*(barW+barGap) - barGap
	groupW := barsW
	for _, g := range c.Groups {
		for line := range strings.SplitSeq(g.Label, " | ") {
			groupW = max(groupW, charW*float64(len(line))-groupGap/2)
		}
	}
	width := left + right + float64(len(c.Groups))*(groupW+groupGap)
	width = max(width, left+right+9*float64(len(c.Title)))
	height := top + plotH + bottom

	maxV := c.RefValue
	for _, g := range c.Groups {
		for _, v := range g.Values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				maxV = max(maxV, v)
			}
		}
	}
	yMax, step := niceScale(maxV * 1.1)
	y := func(v float64) float64 { return top + plotH - v/yMax*plotH }

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%.0f" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", left, esc(c.Title))

	// Grid and y axis.
	for i := 0.0; i*step <= yMax+step/2; i++ {
		v := i * step
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), width-right, y(v))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, esc(trimFloat(v)+"x"))
	}
	fmt.Fprintf(b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+plotH/2, esc(c.YLabel))

	// Bars.
	for gi, g := range c.Groups {
		x0 := left + groupGap/2 + float64(gi)*(groupW+groupGap)
		xBars := x0 + (groupW-barsW)/2
		for si, v := range g.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			x := xBars + float64(si)*(barW+barGap)
			fmt.Fprintf(b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
				x, y(v), barW, y(0)-y(v), seriesColor(si), esc(fmt.Sprintf("%s, %s: %.2fx", g.Label, seriesName(c, si), v)))
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", x+barW/2, y(v)-3, esc(fmt.Sprintf("%.2g", v)))
		}
		// Group labels may be long: split them on " | " into lines.
		for li, line := range strings.Split(g.Label, " | ") {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x0+groupW/2, top+plotH+18+float64(li)*14, esc(line))
		}
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, y(0), width-right, y(0))

	// The reference line, labelled in the legend where no bar hides it.
	if c.RefValue > 0 {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#C00" stroke-dasharray="6 4"/>`+"\n", left, y(c.RefValue), width-right, y(c.RefValue))
	}

	// Legend, below the title.
	lx := left
	for si, name := range c.Series {
		fmt.Fprintf(b, `<rect x="%.1f" y="38" width="12" height="12" fill="%s"/>`+"\n", lx, seriesColor(si))
		fmt.Fprintf(b, `<text x="%.1f" y="48">%s</text>`+"\n", lx+16, esc(name))
		lx += 28 + charW*float64(len(name))
	}
	if c.RefValue > 0 && c.RefLabel != "" {
		fmt.Fprintf(b, `<line x1="%.1f" y1="44" x2="%.1f" y2="44" stroke="#C00" stroke-dasharray="6 4"/>`+"\n", lx, lx+24)
		fmt.Fprintf(b, `<text x="%.1f" y="48" fill="#C00">%s</text>`+"\n", lx+30, esc(c.RefLabel))
	}
	fmt.Fprintln(b, `</svg>`)
	return b.Flush()
}

func seriesName(c chart, i int) string {
	if i < len(c.Series) {
		return c.Series[i]
	}
	return fmt.Sprintf("series %d", i+1)
}

// niceScale returns an axis maximum of at least v and a tick step, both
// 1, 2 or 5 times a power of ten, with about five ticks.
func niceScale(v float64) (yMax, step float64) {
	if !(v > 0) {
		return 1, 0.2
	}
	raw := v / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * pow; step >= raw {
			break
		}
	}
	return math.Ceil(v/step) * step, step
}

// trimFloat formats an axis value with at most two decimals and no
// trailing zeros.
func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

func esc(s string) string {
	var sb strings.Builder
	xml.EscapeText(&sb, []byte(s))
	return sb.String()
}
