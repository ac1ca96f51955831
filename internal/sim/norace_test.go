//go:build !race

package sim

// raceDetector reports whether the tests were built with -race.
const raceDetector = false
