//go:build !race

package upstreamtest

const raceEnabled = false
