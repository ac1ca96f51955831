//go:build !race

package store

// raceDetector reports whether the tests were built with -race.
const raceDetector = false
