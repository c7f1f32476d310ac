package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	for _, tc := range []struct {
		sorted []float64
		p      float64
		want   float64
	}{
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 1, 1},
		{hundred, 0.5, 1},
		{[]float64{7}, 50, 7},
		{[]float64{7}, 99, 7},
		{[]float64{1, 2, 3, 4}, 50, 2},
		{[]float64{1, 2, 3, 4}, 51, 3},
		{[]float64{1, 2, 3, 4}, 99, 4},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tc.sorted), tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("percentile(nil, 50) = %v, want NaN", got)
	}
}

func TestPercentilesDoesNotReorderItsInput(t *testing.T) {
	in := []float64{5, 1, 4, 2, 3}
	p50, p99 := percentiles(in)
	if p50 != 3 || p99 != 5 {
		t.Errorf("percentiles = %v, %v; want 3, 5", p50, p99)
	}
	if in[0] != 5 || in[1] != 1 {
		t.Errorf("input reordered: %v", in)
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	bars := []bar{
		{Group: "1. Add | G=1", Series: "vs Redis + go-redis", Ratio: 0.5},
		{Group: "1. Add | G=1", Series: "vs Redis + rueidis", Ratio: 0.6},
		{Group: "1. Add | G=32", Series: "vs Redis + go-redis", Ratio: 2.1},
		{Group: "8. disk | vs AOF <always> & co", Series: "vs Redis + go-redis", Ratio: 1.5},
	}
	var buf bytes.Buffer
	if err := writeSVG(&buf, ratioChart(bars)); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	var root string
	rects := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, buf.String())
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q, want the SVG one", se.Name.Space)
				}
			}
			for _, a := range se.Attr {
				if se.Name.Local == "rect" && a.Name.Local == "class" && a.Value == "bar" {
					rects++
				}
				if strings.Contains(a.Value, "NaN") || strings.Contains(a.Value, "Inf") {
					t.Errorf("<%s %s=%q>: not a number", se.Name.Local, a.Name.Local, a.Value)
				}
			}
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	// Four bars: the G=32 and disk groups have no rueidis bar.
	if rects != 4 {
		t.Errorf("%d bars drawn, want 4", rects)
	}
	if !strings.Contains(buf.String(), "vs AOF &lt;always&gt; &amp; co") {
		t.Error("group label not escaped")
	}
}

func TestRatioChartArrangesGroupsAndSeries(t *testing.T) {
	c := ratioChart([]bar{
		{Group: "a", Series: "x", Ratio: 1},
		{Group: "b", Series: "y", Ratio: 2},
		{Group: "a", Series: "y", Ratio: 3},
	})
	if len(c.Series) != 2 || c.Series[0] != "x" || c.Series[1] != "y" {
		t.Fatalf("series %v, want [x y]", c.Series)
	}
	if len(c.Groups) != 2 || c.Groups[0].Label != "a" || c.Groups[1].Label != "b" {
		t.Fatalf("groups %+v, want a then b", c.Groups)
	}
	if v := c.Groups[0].Values; v[0] != 1 || v[1] != 3 {
		t.Errorf("group a: %v, want [1 3]", v)
	}
	if v := c.Groups[1].Values; !math.IsNaN(v[0]) || v[1] != 2 {
		t.Errorf("group b: %v, want [NaN 2]", v)
	}
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ v, max, step float64 }{
		{2.2, 2.5, 0.5},
		{0.9, 1, 0.2},
		{7, 8, 2},
		{33, 40, 10},
		{0, 1, 0.2},
	} {
		max, step := niceScale(tc.v)
		if math.Abs(max-tc.max) > 1e-9 || math.Abs(step-tc.step) > 1e-9 {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.v, max, step, tc.max, tc.step)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234567.4, "ops/s", "1,234,567 ops/s"},
		{999, "ops/s", "999 ops/s"},
		{271.3, "ns", "271 ns"},
		{15.34, "µs", "15.3 µs"},
		{1.234, "ms", "1.23 ms"},
		{math.NaN(), "ms", "n/a"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestTargets(t *testing.T) {
	var s section
	r := s.add("ours", 300, "ops/s").vs("peer", 100).ratioAtLeast(2)
	if r.Ratio != 3 || r.Pass == nil || !*r.Pass || r.Target != ">= 2x" {
		t.Errorf("ratioAtLeast: %+v", *r)
	}
	r = s.add("latency", 30, "µs").vs("floor", 10).ratioAtMost(1.5)
	if *r.Pass {
		t.Errorf("3x the floor passes <= 1.5x: %+v", *r)
	}
	r = s.add("local", 301, "ns").valueAtMost(300)
	if *r.Pass || r.Target != "<= 300 ns" {
		t.Errorf("valueAtMost: %+v", *r)
	}
	r = s.add("no peer", 5, "ops/s").vs("peer", 0).ratioAtLeast(1)
	if *r.Pass {
		t.Errorf("a missing peer figure passes: %+v", *r)
	}
}

// wrkReport is wrk's --latency report, as wrk 4.2 prints it.
const wrkReport = `Running 1s test @ http://127.0.0.1:18081/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.36ms  817.84us   6.52ms   69.76%
    Req/Sec   816.90     56.11     0.90k    60.00%
  Latency Distribution
     50%  812.00us
     75%    2.85ms
     90%    3.38ms
     99%    1.74s
  814 requests in 1.00s, 1.96MB read
Requests/sec:    812.72
Transfer/sec:      1.95MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk([]byte(wrkReport))
	if err != nil || r.rps != 812.72 || r.p50 != 812 || r.p99 != 1.74e6 {
		t.Errorf("parseWrk = %+v, %v; want 812.72 req/s, p50 812 µs, p99 1.74 s", r, err)
	}
	failed := strings.Replace(wrkReport, "Requests/sec", "  Non-2xx or 3xx responses: 814\nRequests/sec", 1)
	if _, err := parseWrk([]byte(failed)); err == nil || !strings.Contains(err.Error(), "Non-2xx") {
		t.Errorf("a report of failed requests: %v", err)
	}
	if _, err := parseWrk([]byte("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Error("no error for a report without figures")
	}
}
