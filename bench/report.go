package main

// What a run reports: a table per workload on stdout, the same figures as
// JSON, and the ratios as an SVG chart.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// row is one figure of a workload, with its ratio to a peer and, if the
// issue sets one, its target and whether this run met it.
type row struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Peer   string  `json:"peer,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"` // Value / the peer's value
	Target string  `json:"target,omitempty"`
	Pass   *bool   `json:"pass,omitempty"`
}

// section is one workload's results.
type section struct {
	ID    int      `json:"id"`
	Title string   `json:"title"`
	Rows  []row    `json:"rows"`
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error,omitempty"`
}

// add appends a row and returns it, for vs and target to refine.
func (s *section) add(name string, value float64, unit string) *row {
	s.Rows = append(s.Rows, row{Name: name, Value: value, Unit: unit})
	return &s.Rows[len(s.Rows)-1]
}

func (s *section) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// vs sets the row's ratio to peer's value.
func (r *row) vs(peer string, value float64) *row {
	r.Peer = peer
	if value > 0 {
		r.Ratio = r.Value / value
	}
	return r
}

// ratioAtLeast and ratioAtMost set a target on the ratio; valueAtMost one on
// the value itself.
func (r *row) ratioAtLeast(limit float64) *row {
	return r.target(fmt.Sprintf(">= %sx", trimFloat(limit)), r.Ratio > 0 && r.Ratio >= limit)
}

func (r *row) ratioAtMost(limit float64) *row {
	return r.target(fmt.Sprintf("<= %sx", trimFloat(limit)), r.Ratio > 0 && r.Ratio <= limit)
}

func (r *row) valueAtMost(limit float64) *row {
	return r.target(fmt.Sprintf("<= %s", formatValue(limit, r.Unit)), r.Value <= limit)
}

func (r *row) target(desc string, pass bool) *row {
	r.Target, r.Pass = desc, &pass
	return r
}

// printSection writes s as an aligned table.
func printSection(w io.Writer, s section) {
	fmt.Fprintf(w, "\n== %d. %s\n", s.ID, s.Title)
	if s.Error != "" {
		fmt.Fprintf(w, "   FAILED: %s\n", s.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(s.Rows) > 0 {
		fmt.Fprintln(tw, "   what\tvalue\tvs\tratio\ttarget\tresult")
	}
	for _, r := range s.Rows {
		ratio, result := "", ""
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		if r.Pass != nil {
			result = "MISS"
			if *r.Pass {
				result = "PASS"
			}
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%s\n", r.Name, formatValue(r.Value, r.Unit), r.Peer, ratio, r.Target, result)
	}
	tw.Flush()
	for _, n := range s.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

// formatValue writes v with its unit, with digits grouped for rates.
func formatValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case unit == "ops/s":
		return groupDigits(int64(math.Round(v))) + " ops/s"
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// results is everything written with -json.
type results struct {
	Command   string    `json:"command"`
	Machine   machine   `json:"machine"`
	Config    runConfig `json:"config"`
	Workloads []section `json:"workloads"`
}

type runConfig struct {
	Processes  int     `json:"processes"`
	Goroutines []int   `json:"goroutines"`
	Duration   string  `json:"duration"`
	Warmup     string  `json:"warmup"`
	Kills      int     `json:"kills"`
	BigKeys    int     `json:"bigKeys"`
	Workloads  []int   `json:"workloads"`
	ChartBars  []bar   `json:"chart"`
	Seconds    float64 `json:"seconds"` // the whole run
	CPUProfile string  `json:"cpuProfileDir,omitempty"`
}

// bar is one bar of the chart: a ratio of ours to a Redis peer.
type bar struct {
	Group  string  `json:"group"`
	Series string  `json:"series"`
	Ratio  float64 `json:"ratio"`
}

func writeJSON(path string, r results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ratioChart arranges bars into a chart: groups and series in the order
// they first appear.
func ratioChart(bars []bar) chart {
	c := chart{
		Title:    "sharedstate / Redis throughput: every op from another process, one machine",
		YLabel:   "ops/s, sharedstate / Redis",
		RefValue: 1,
		RefLabel: "Redis = 1x",
	}
	groupAt, seriesAt := map[string]int{}, map[string]int{}
	for _, b := range bars {
		if _, ok := seriesAt[b.Series]; !ok {
			seriesAt[b.Series] = len(c.Series)
			c.Series = append(c.Series, b.Series)
		}
	}
	for _, b := range bars {
		gi, ok := groupAt[b.Group]
		if !ok {
			gi = len(c.Groups)
			groupAt[b.Group] = gi
			vals := make([]float64, len(c.Series))
			for i := range vals {
				vals[i] = math.NaN()
			}
			c.Groups = append(c.Groups, chartGroup{Label: b.Group, Values: vals})
		}
		c.Groups[gi].Values[seriesAt[b.Series]] = b.Ratio
	}
	return c
}

func writeChart(path string, bars []bar) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeSVG(f, ratioChart(bars)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
