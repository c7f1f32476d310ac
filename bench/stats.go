package main

import (
	"math"
	"slices"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample that at least p% of the samples
// do not exceed. It returns NaN for no samples.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p * float64(len(sorted)) / 100)) // p*n first: exact for whole numbers
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// percentiles sorts a copy of samples and returns their p50 and p99.
func percentiles(samples []float64) (p50, p99 float64) {
	s := slices.Clone(samples)
	slices.Sort(s)
	return percentile(s, 50), percentile(s, 99)
}
