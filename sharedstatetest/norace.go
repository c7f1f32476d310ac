//go:build !race

package sharedstatetest

const raceEnabled = false
