//go:build race

package upstreamtest

const raceEnabled = true
