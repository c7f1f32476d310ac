//go:build race

package sharedstatetest

const raceEnabled = true
